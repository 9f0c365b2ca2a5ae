"""`caducee patient add|activate|show|reissue|pharmacy`, `caducee trust list|add|remove|import`."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from audit.events import Action, AuditEvent
from caducee import config as config_mod
from caducee.cli import CliError
from caducee.context import Context, open_context
from directory import lookup as directory_lookup
from mailstore import policy_patients, policy_store, policy_trust
from mailstore.accounts import AccountError, get_by_address
from mailstore.db import Tx
from mailstore.policy_patients import ActivationResult, PatientError
from mailstore.policy_store import PolicyStoreError
from mailstore.policy_trust import MANUAL_SOURCE, TrustStoreError
from mailstore.trust_refresh import TrustSourceError, fetch_source, resolve_source
from policy.domains import display_domain
from policy.patients import check_pharmacy
from policy.trust_list import TrustListError, parse_trust_list

T = TypeVar("T")

ACTOR = "cli"

_ACTIVATION_TEXT = {
    ActivationResult.ACTIVATED: "activated",
    ActivationResult.WRONG_CODE: "wrong activation code",
    ActivationResult.EXPIRED: "the activation code has expired (issue a new one: patient reissue)",
    ActivationResult.LOCKED: "too many wrong codes: issue a new one (patient reissue)",
    ActivationResult.NO_PENDING_CODE: "no activation pending (already activated?)",
    ActivationResult.UNKNOWN_PATIENT: "no patient with this INS",
}


def register(sub: Any) -> None:
    _register_patient(sub)
    _register_trust(sub)


def _register_patient(sub: Any) -> None:
    pat = sub.add_parser("patient", help="patient accounts, activation, pharmacy grants")
    s = pat.add_subparsers(dest="patient_cmd", required=True)

    add = s.add_parser("add", help="create a patient account (prints a one-time activation code)")
    add.add_argument("--ins", required=True, help="INS matricule (NIR), 15 characters")
    add.add_argument("--name", required=True, help="display name")
    add.add_argument("--email", required=True, help="personal e-mail for notifications")
    add.set_defaults(func=cmd_patient_add)

    act = s.add_parser("activate", help="check an activation code and activate the account")
    act.add_argument("--ins", required=True)
    act.add_argument("--code", required=True)
    g = act.add_mutually_exclusive_group()
    g.add_argument("--password-stdin", action="store_true", help="read a password on stdin")
    g.add_argument("--prompt", action="store_true", help="ask for a password")
    act.set_defaults(func=cmd_patient_activate)

    show = s.add_parser("show", help="a patient's profile, contact permissions, pharmacies")
    show.add_argument("--ins", required=True)
    show.set_defaults(func=cmd_patient_show)

    re_ = s.add_parser("reissue", help="issue a new activation code (the old one is void)")
    re_.add_argument("--ins", required=True)
    re_.set_defaults(func=cmd_patient_reissue)

    ph = s.add_parser("pharmacy", help="record or revoke a patient's pharmacy registration")
    ph.add_argument("action", choices=("grant", "revoke"))
    ph.add_argument("--ins", required=True)
    ph.add_argument("--pharmacy", required=True, help="the pharmacy's ORG mailbox address")
    ph.add_argument("--days", type=int, default=0, help="grant validity in days (0: no end)")
    ph.set_defaults(func=cmd_patient_pharmacy)


def _register_trust(sub: Any) -> None:
    tr = sub.add_parser("trust", help="the trusted-domain list (liste blanche)")
    s = tr.add_subparsers(dest="trust_cmd", required=True)

    ls = s.add_parser("list", help="list trusted domains and where they come from")
    ls.add_argument("--source", default=None, help="only this source")
    ls.set_defaults(func=cmd_trust_list)

    add = s.add_parser("add", help="trust domains (source: manual)")
    add.add_argument("domains", nargs="+")
    add.set_defaults(func=cmd_trust_add)

    rm = s.add_parser("remove", help="stop trusting domains added by hand")
    rm.add_argument("domains", nargs="+")
    rm.add_argument("--source", default=MANUAL_SOURCE,
                    help=f"remove from this source (default {MANUAL_SOURCE})")
    rm.add_argument("--all-sources", action="store_true", help="remove from every source")
    rm.set_defaults(func=cmd_trust_remove)

    imp = s.add_parser("import", help="load a liste blanche (XML or plain) from a file or URL")
    imp.add_argument("location", help="file path or https:// URL")
    imp.add_argument("--source", default=None,
                     help="name of the source to replace (default: the location)")
    imp.set_defaults(func=cmd_trust_import)


# -- helpers ------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _open(args: argparse.Namespace) -> Context:
    return open_context(config_mod.load(args.config), readers=1)


def _write(ctx: Context, job: Callable[[Tx], T]) -> T:
    try:
        return ctx.db.write_sync(job)
    except (PatientError, AccountError, PolicyStoreError, TrustStoreError) as exc:
        raise CliError(str(exc)) from None


def _event(action: Action, *, patient_ins: str | None = None, outcome: str = "ok",
           reason: str | None = None, **objects: str) -> AuditEvent:
    return AuditEvent(
        action=action, actor=ACTOR, protocol="cli", outcome=outcome, reason=reason,
        patient_ins=patient_ins, object_ids=tuple(objects.items()),
    )


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise CliError("no password on stdin")
        return value
    if args.prompt:
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise CliError("the passwords differ")
        return first
    return None


# -- patient ------------------------------------------------------------------------------


def cmd_patient_add(args: argparse.Namespace) -> int:
    ctx = _open(args)
    cfg = ctx.config
    now = _now()
    validity = timedelta(days=cfg.policy.activation_code_days)
    try:
        def job(tx: Tx) -> tuple[str, str]:
            account, code = policy_patients.add_patient(
                tx.conn, ctx.keystore, ins=args.ins, patient_domain=cfg.patient_domain,
                display_name=args.name, notification_email=args.email, now=now,
                code_valid_for=validity,
            )
            ctx.journal.append(tx.conn, [_event(
                Action.ACCOUNT_CHANGED, patient_ins=account.ins, change="patient created",
            )])
            return account.address, code

        address, code = _write(ctx, job)
    finally:
        ctx.close()
    print(f"created patient account {address} (pending activation)")
    print(f"activation code (shown once, valid {validity.days} days): {code}")
    return 0


def cmd_patient_activate(args: argparse.Namespace) -> int:
    password = _read_password(args)
    ctx = _open(args)
    try:
        def job(tx: Tx) -> ActivationResult:
            result = policy_patients.activate_patient(
                tx.conn, ins=args.ins, code=args.code, now=_now(), password=password
            )
            ok = result is ActivationResult.ACTIVATED
            ctx.journal.append(tx.conn, [_event(
                Action.ACCOUNT_CHANGED, patient_ins=args.ins.strip().upper(),
                outcome="ok" if ok else "refused", reason=None if ok else result.value,
                change="patient activation",
            )])
            return result

        result = _write(ctx, job)
    finally:
        ctx.close()
    if result is not ActivationResult.ACTIVATED:
        raise CliError(f"patient {args.ins}: {_ACTIVATION_TEXT[result]}")
    print(f"patient {args.ins} activated")
    return 0


def cmd_patient_reissue(args: argparse.Namespace) -> int:
    ctx = _open(args)
    validity = timedelta(days=ctx.config.policy.activation_code_days)
    try:
        def job(tx: Tx) -> str:
            code = policy_patients.reissue_activation_code(
                tx.conn, args.ins, now=_now(), code_valid_for=validity
            )
            ctx.journal.append(tx.conn, [_event(
                Action.ACCOUNT_CHANGED, patient_ins=args.ins.strip().upper(),
                change="activation code reissued",
            )])
            return code

        code = _write(ctx, job)
    finally:
        ctx.close()
    print(f"activation code (shown once, valid {validity.days} days): {code}")
    return 0


def cmd_patient_show(args: argparse.Namespace) -> int:
    ctx = _open(args)
    ins = args.ins.strip().upper()
    try:
        def read(conn: Any) -> tuple[Any, Any, Any, Any]:
            profile = policy_patients.get_profile(conn, ins)
            account = get_by_address(conn, profile.address) if profile else None
            return (profile, account, policy_store.list_permissions(conn, ins),
                    policy_store.list_pharmacy_grants(conn, ins))

        profile, account, permissions, grants = ctx.db.read_sync(read)
    finally:
        ctx.close()
    if profile is None:
        raise CliError(f"no patient with INS {ins}")
    state = account.state if account else "missing account"
    print(f"patient   {profile.address}  ({account.display_name if account else ''})")
    print(f"state     {state}")
    print(f"notify    {profile.notification_email}")
    print(f"created   {profile.created_at:%Y-%m-%d %H:%M} UTC")
    if profile.activated_at:
        print(f"activated {profile.activated_at:%Y-%m-%d %H:%M} UTC")
    elif profile.has_pending_code and profile.activation_expires_at:
        print(f"activation code pending until {profile.activation_expires_at:%Y-%m-%d} "
              f"({profile.activation_failures} wrong attempts)")
    print("contact permissions:" if permissions else "contact permissions: none")
    for p in permissions:
        status = "open" if p.is_open else f"closed {p.closed_at:%Y-%m-%d %H:%M}"
        print(f"  {p.professional:<45} since {p.granted_at:%Y-%m-%d}  "
              f"last {p.last_message_at:%Y-%m-%d %H:%M}  {status}")
    print("pharmacies:" if grants else "pharmacies: none")
    for g in grants:
        status = "revoked" if g.revoked_at else (
            f"until {g.expires_at:%Y-%m-%d}" if g.expires_at else "in force")
        print(f"  {g.pharmacy:<45} since {g.granted_at:%Y-%m-%d}  {status}")
    return 0


def cmd_patient_pharmacy(args: argparse.Namespace) -> int:
    ctx = _open(args)
    ins = args.ins.strip().upper()
    now = _now()
    try:
        if not _patient_exists(ctx, ins):
            raise CliError(f"no patient with INS {ins}")

        def job(tx: Tx) -> bool:
            if args.action == "grant":
                # DOMAIN.md §5: only an active ORG mailbox of a pharmacist structure.
                problem = check_pharmacy(directory_lookup.mailbox_fact(tx.conn, args.pharmacy))
                if problem is not None:
                    raise CliError(f"cannot grant {args.pharmacy}: {problem}")
                expires = now + timedelta(days=args.days) if args.days > 0 else None
                policy_store.grant_pharmacy(
                    tx.conn, patient_ins=ins, pharmacy=args.pharmacy, granted_by=ACTOR, at=now,
                    expires_at=expires,
                )
                done = True
            else:
                done = policy_store.revoke_pharmacy(
                    tx.conn, patient_ins=ins, pharmacy=args.pharmacy, revoked_by=ACTOR, at=now
                )
            if done:
                ctx.journal.append(tx.conn, [_event(
                    Action.PERMISSION_CHANGED, patient_ins=ins,
                    change=f"pharmacy {args.action}", address=args.pharmacy.strip().lower(),
                )])
            return done

        done = _write(ctx, job)
    finally:
        ctx.close()
    if not done:
        raise CliError(f"no pharmacy grant in force for {args.pharmacy}")
    verb = "granted" if args.action == "grant" else "revoked"
    print(f"pharmacy {args.pharmacy} {verb} for patient {ins}")
    return 0


def _patient_exists(ctx: Context, ins: str) -> bool:
    return ctx.db.read_sync(lambda conn: policy_patients.get_profile(conn, ins)) is not None


# -- trust --------------------------------------------------------------------------------


def cmd_trust_list(args: argparse.Namespace) -> int:
    ctx = _open(args)
    try:
        rows = ctx.db.read_sync(lambda conn: policy_trust.list_trusted(conn, source=args.source))
    finally:
        ctx.close()
    cfg = ctx.config
    own = [*cfg.domains.professional, cfg.patient_domain]
    for d in own:
        print(f"{d:<50} (our own domain)")
    for r in rows:
        shown = display_domain(r.domain)
        label = r.domain if shown == r.domain else f"{r.domain} ({shown})"
        print(f"{label:<50} {r.source}  {r.added_at:%Y-%m-%d}")
    print(f"{len({r.domain for r in rows})} trusted domains, plus {len(own)} of our own")
    return 0


def cmd_trust_add(args: argparse.Namespace) -> int:
    ctx = _open(args)
    now = _now()
    try:
        def job(tx: Tx) -> list[bool]:
            added = [policy_trust.add_trusted(tx.conn, d, added_by=ACTOR, at=now)
                     for d in args.domains]
            ctx.journal.append(tx.conn, [_event(
                Action.TRUST_CHANGED, change="add", domains=",".join(args.domains))])
            return added

        added = _write(ctx, job)
    finally:
        ctx.close()
    for name, was_added in zip(args.domains, added, strict=True):
        print(f"{name}: {'added' if was_added else 'already trusted'}")
    return 0


def cmd_trust_remove(args: argparse.Namespace) -> int:
    ctx = _open(args)
    source = None if args.all_sources else args.source
    try:
        def job(tx: Tx) -> list[int]:
            removed = [policy_trust.remove_trusted(tx.conn, d, source=source)
                       for d in args.domains]
            ctx.journal.append(tx.conn, [_event(
                Action.TRUST_CHANGED, change="remove", domains=",".join(args.domains))])
            return removed

        removed = _write(ctx, job)
    finally:
        ctx.close()
    missing = [d for d, n in zip(args.domains, removed, strict=True) if not n]
    for d, n in zip(args.domains, removed, strict=True):
        if n:
            print(f"{d}: removed")
    if missing:
        where = "any source" if source is None else f"source {source}"
        raise CliError(f"not listed by {where}: {', '.join(missing)}")
    return 0


def cmd_trust_import(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    location = resolve_source(args.location, cfg.path.parent)
    try:
        data = fetch_source(location, ca_file=cfg.policy.trust_ca_file)
        parsed = parse_trust_list(data)
    except (TrustSourceError, TrustListError) as exc:
        raise CliError(str(exc)) from None
    for bad in parsed.rejected:
        where = f"line {bad.line}: " if bad.line else ""
        print(f"skipped {where}{bad.value!r}: {bad.problem}", file=sys.stderr)
    if not parsed.domains:
        raise CliError(f"{location}: no domain in the list; nothing changed")
    source = args.source or location
    ctx = open_context(cfg, readers=1)
    now = _now()
    try:
        def job(tx: Tx) -> policy_trust.ReplaceResult:
            result = policy_trust.replace_from_source(
                tx.conn, source, parsed.domains, added_by=ACTOR, at=now
            )
            ctx.journal.append(tx.conn, [_event(
                Action.TRUST_CHANGED, change="import", source=source,
                added=str(result.added), removed=str(result.removed),
            )])
            return result

        result = _write(ctx, job)
    finally:
        ctx.close()
    print(f"{source}: {len(parsed.domains)} domains (+{result.added}, -{result.removed}, "
          f"{result.kept} unchanged, {len(parsed.rejected)} skipped)")
    return 0
