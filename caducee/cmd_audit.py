"""`caducee audit verify|export|show|prune|checkpoint|keys|rotate-key` — the security
officer's tools.

Output is in French (the operator's security officer reads it); the work is done by the
:mod:`audit` package. These commands need the database and the audit keys only (not the
master key), so they also run on a copy of the database.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine

from audit import export as export_mod
from audit import export_signing, keys, prune
from audit.checkpoints import MANUAL
from audit.events import Action, AuditEvent
from audit.journal import Journal
from audit.verify import KIND_LABELS, VerifyReport, verify
from caducee import config as config_mod
from caducee.cli import CliError
from caducee.config import Config
from mailstore.db import create_db_engine


def register(sub: Any) -> None:
    au = sub.add_parser("audit", help="the tamper-evident audit journal")
    s = au.add_subparsers(dest="audit_cmd", required=True)

    v = s.add_parser("verify", help="check the chain, the signatures and the checkpoint file")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument("--no-file", action="store_true",
                   help="ignore the checkpoint file (e.g. on a copy of the database)")
    v.add_argument("--allow-missing-file", action="store_true",
                   help="a missing checkpoint file is only a warning (it is a problem "
                        "when the database holds checkpoints); the file is then re-created "
                        "from the database")
    v.add_argument("--public-key", type=Path, action="append", default=[],
                   help="journal public key (PEM); repeat for retired keys "
                        "(default: the configured journal key and audit.retired_keys_dir)")
    v.set_defaults(func=cmd_verify)

    e = s.add_parser("export", help="export a period as JSON Lines with a detached signature")
    e.add_argument("--from", dest="since", type=_when, help="start (YYYY-MM-DD or ISO 8601, UTC)")
    e.add_argument("--to", dest="until", type=_until,
                   help="end (a date includes that whole day; UTC)")
    e.add_argument("--patient", metavar="INS", help="only this patient's entries")
    e.add_argument("-o", "--output", type=Path, help="file to write (default: in the cwd)")
    e.add_argument("--no-sign", action="store_true", help="skip the OpenPGP signature")
    e.set_defaults(func=cmd_export)

    sh = s.add_parser("show", help="list entries")
    sh.add_argument("--from", dest="since", type=_when)
    sh.add_argument("--to", dest="until", type=_until)
    sh.add_argument("--patient", metavar="INS")
    sh.add_argument("--actor")
    sh.add_argument("--action", action="append", choices=[a.value for a in Action])
    sh.add_argument("--last", type=int, default=50, metavar="N", help="the N latest (default 50)")
    sh.add_argument("--json", action="store_true", help="one JSON object a line")
    sh.set_defaults(func=cmd_show)

    pr = s.add_parser("prune", help="remove entries older than the retention period")
    pr.add_argument("--before", type=_when,
                    help="remove entries written before this time "
                         "(default: now minus audit.retention_days)")
    pr.add_argument("--dry-run", action="store_true")
    pr.set_defaults(func=cmd_prune)

    cp = s.add_parser("checkpoint", help="sign the current head now and update the file")
    cp.set_defaults(func=cmd_checkpoint)

    k = s.add_parser("keys", help="print the public keys an outside auditor needs")
    k.set_defaults(func=cmd_keys)

    rk = s.add_parser("rotate-key",
                      help="replace the journal signing key (the old public key is kept "
                           "in audit.retired_keys_dir for verification)")
    rk.set_defaults(func=cmd_rotate_key)


# -- argument types ------------------------------------------------------------------------


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"date invalide : {text!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _until(text: str) -> datetime:
    when = _when(text)
    if len(text) == 10:  # a bare date: up to the end of that day
        when += timedelta(days=1)
    return when


# -- plumbing ------------------------------------------------------------------------------


@contextmanager
def _opened(args: argparse.Namespace) -> Iterator[tuple[Config, Engine, Journal]]:
    from caducee.context import open_journal

    cfg = config_mod.load(args.config)
    try:
        journal = open_journal(cfg)
    except keys.JournalKeyError as exc:  # a damaged key file: say which, no traceback
        raise CliError(f"clé du journal illisible : {exc}") from None
    engine = create_db_engine(cfg.database_url, pool_size=2)
    try:
        yield cfg, engine, journal
    finally:
        engine.dispose()


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _shown(value: object) -> str:
    """``value`` for one line of a terminal: characters that are not printable (line breaks,
    ESC and other control characters, bidirectional overrides) and ``\\`` are escaped.

    A journal value may come from the network (the user name of a failed login): written
    raw, ``\\r`` or an escape sequence could disguise one entry as another in ``show``.
    """
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        "\\\\" if ch == "\\" else ch if ch.isprintable()
        else f"\\x{ord(ch):02x}" if ord(ch) < 0x100
        else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"
        for ch in text
    )


def _load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        return keys.load_public_key(path)
    except keys.JournalKeyError as exc:
        raise CliError(str(exc)) from None


def _current_public_key(cfg: Config, journal: Journal) -> Ed25519PublicKey | None:
    """The current journal key: from the private key, or its ``.pub`` alone."""
    if journal.signing_key is not None:
        return journal.signing_key.public_key()
    pub = keys.public_path(cfg.audit.journal_key_file)
    return _load_public_key(pub) if pub.exists() else None


def _verify_keys(
    journal: Journal, current: Ed25519PublicKey | None, extra: list[Path]
) -> dict[str, Ed25519PublicKey]:
    """The ``current`` journal key (:func:`_current_public_key`), the retired keys of
    ``audit.retired_keys_dir`` (already in ``journal.verify_keys``) and ``extra``."""
    found = [current] if current is not None else []
    return {**journal.verify_keys, **keys.key_ring([*found, *map(_load_public_key, extra)])}


def _print_report(report: VerifyReport) -> None:
    if report.ok:
        print(f"journal intègre : {report.entries} entrées "
              f"({report.first_seq or '-'} à {report.last_seq or '-'}), "
              f"{report.checkpoints} points de contrôle signés vérifiés, "
              f"{report.seconds:.1f} s")
    else:
        first = report.first_problem
        assert first is not None
        print(f"JOURNAL ALTÉRÉ : première anomalie à l'entrée {first.seq} "
              f"({KIND_LABELS.get(first.kind, first.kind)})")
        for p in sorted(report.problems, key=lambda p: p.seq):
            print(f"  entrée {p.seq} : {KIND_LABELS.get(p.kind, p.kind)} — {p.detail}")
    if report.unsigned_tail:
        print(f"  {report.unsigned_tail} entrées postérieures au dernier point de contrôle "
              f"({report.last_checkpoint_seq}) ne sont protégées que par le chaînage")
    for w in report.warnings:
        print(f"  attention : {w}")


# -- commands ------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    with _opened(args) as (cfg, engine, journal):
        ring = _verify_keys(journal, _current_public_key(cfg, journal), args.public_key)
        if not ring:
            raise CliError("aucune clé publique du journal : indiquez --public-key")
        cp_file = None if args.no_file else cfg.audit.checkpoint_file
        # A missing file is never re-created before verifying: that would hide its loss.
        file_missing = cp_file is not None and not cp_file.exists()
        if cp_file is not None and not file_missing and journal.signing_key is not None:
            with engine.connect() as conn:
                journal.sync_checkpoint_file(conn)
        with engine.connect() as conn:
            report = verify(conn, ring, cp_file, allow_missing_file=args.allow_missing_file)
        recreated = 0
        if file_missing and args.allow_missing_file and report.ok and journal.signing_key:
            with engine.connect() as conn:
                recreated = journal.sync_checkpoint_file(conn)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        _print_report(report)
        if recreated:
            print(f"  fichier {cp_file} recréé à partir de la base "
                  f"({recreated} points de contrôle)")
    return 0 if report.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    with _opened(args) as (cfg, engine, journal):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out: Path = args.output or Path(f"audit-export-{stamp}.jsonl")
        pub = _current_public_key(cfg, journal)
        ring = _verify_keys(journal, pub, [])
        retired = [k for kid, k in ring.items() if pub is None or kid != keys.key_id(pub)]
        with engine.connect() as conn:
            result = export_mod.export(
                conn, out, since=args.since, until=args.until, patient_ins=args.patient,
                journal_key=pub, retired_keys=retired,
            )
        asc = None
        if not args.no_sign:
            try:
                asc = export_signing.sign_detached(
                    cfg.audit.gnupg_home, out, cfg.audit.operator_key
                )
            except export_signing.ExportSigningError as exc:
                raise CliError(f"signature impossible : {exc}") from None
        event = AuditEvent(
            Action.AUDIT_EXPORTED, _actor(), protocol="cli", patient_ins=args.patient,
            object_ids=tuple(
                (k, str(val)) for k, val in (
                    ("from", args.since.isoformat() if args.since else ""),
                    ("to", args.until.isoformat() if args.until else ""),
                    ("entries", result.entries),
                ) if val != ""
            ),
        )
        with engine.begin() as conn:
            journal.append(conn, [event])
    print(f"{result.entries} entrées exportées dans {out}")
    if asc is not None:
        print(f"signature détachée : {asc}")
        print(f"vérification par un tiers : gpg --verify {asc} {out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from audit.entries import query

    with _opened(args) as (_cfg, engine, _journal), engine.connect() as conn:
        entries = query(
            conn, since=args.since, until=args.until, patient_ins=args.patient,
            actor=args.actor, actions=args.action, newest_first=True, limit=args.last,
        )
    for entry in reversed(entries):
        ev = entry.event
        if args.json:
            print(json.dumps({
                "seq": entry.seq, "at": entry.at.isoformat(), "action": ev.action,
                "actor": ev.actor, "outcome": ev.outcome, "reason": ev.reason,
                "message_id": ev.message_id, "document_id": ev.document_id,
                "queue_id": ev.queue_id, "patient_ins": ev.patient_ins,
                "client_ip": ev.client_ip, "protocol": ev.protocol,
                "object_ids": [list(p) for p in ev.object_ids],
            }, ensure_ascii=False))
            continue
        ids = " ".join(f"{_shown(k)}={_shown(val)}" for k, val in (
            ("msg", ev.message_id), ("doc", ev.document_id), ("queue", ev.queue_id),
            ("ins", ev.patient_ins), ("ip", ev.client_ip), ("reason", ev.reason),
            *ev.object_ids,
        ) if val)
        print(f"{entry.seq:>8} {entry.at:%Y-%m-%d %H:%M:%S} {_shown(ev.action):<20} "
              f"{_shown(ev.outcome):<8} {_shown(ev.actor)} {ids}".rstrip())
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    with _opened(args) as (cfg, engine, journal):
        limit = datetime.now(UTC) - timedelta(days=cfg.audit.retention_days)
        before = args.before or limit
        if before > limit:
            raise CliError(
                f"la durée de conservation est de {cfg.audit.retention_days} jours : "
                f"rien d'antérieur au {limit:%Y-%m-%d %H:%M} UTC ne peut être supprimé avant "
                "son terme (modifiez audit.retention_days)"
            )
        if journal.signing_key is None:
            raise CliError("la clé du journal est absente : une purge exige un point de "
                           "contrôle signé")
        with engine.connect() as conn:
            if cfg.audit.checkpoint_file.exists():  # a lost file must stop the prune
                journal.sync_checkpoint_file(conn)
            try:
                plan = prune.plan_prune(conn, before, journal.verify_keys,
                                        cfg.audit.checkpoint_file)
            except prune.PruneRefused as exc:
                if exc.report is not None:
                    _print_report(exc.report)
                raise CliError(str(exc)) from None
        if plan.boundary == 0:
            print("aucune entrée à supprimer")
            return 0
        count = plan.boundary - plan.first + 1
        if args.dry_run:
            print(f"supprimerait les entrées {plan.first} à {plan.boundary} "
                  f"(au plus {count}), antérieures au {before:%Y-%m-%d %H:%M} UTC")
            return 0
        try:
            with engine.begin() as conn:
                result = prune.apply_prune(conn, journal, plan, _actor())
        except prune.PruneRefused as exc:
            raise CliError(str(exc)) from None
        with engine.connect() as conn:
            journal.sync_checkpoint_file(conn)
    print(f"{result.removed} entrées supprimées (jusqu'à l'entrée {result.boundary}, "
          "derrière un point de contrôle signé)")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with _opened(args) as (_cfg, engine, journal):
        if journal.signing_key is None:
            raise CliError("la clé du journal est absente")
        with engine.begin() as conn:
            cp = journal.checkpoint(conn, MANUAL, force=True)
        with engine.connect() as conn:
            journal.sync_checkpoint_file(conn)
    if cp is None:
        print("journal vide : aucun point de contrôle")
    else:
        print(f"point de contrôle signé à l'entrée {cp.seq} ({cp.hash.hex()[:16]}…)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    with _opened(args) as (cfg, _engine, journal):
        current = _current_public_key(cfg, journal)
        ring = _verify_keys(journal, current, [])
        current_id = keys.key_id(current) if current is not None else None
        for kid, pub in ring.items():
            state = "actuelle" if kid == current_id else "retirée"
            print(f"# clé du journal {kid} ({state} ; Ed25519, vérifie les points de contrôle)")
            sys.stdout.write(keys.public_pem(pub))
        try:
            fpr = export_signing.operator_fingerprint(cfg.audit.gnupg_home, cfg.audit.operator_key)
            armored = export_signing.export_public_key(cfg.audit.gnupg_home, fpr)
        except export_signing.ExportSigningError as exc:
            print(f"# clé OpenPGP de l'opérateur indisponible : {exc}")
            return 1
        print(f"# clé OpenPGP de l'opérateur {fpr} (vérifie les exports : gpg --import)")
        sys.stdout.write(armored)
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Replace the journal key: sign the head with the old key, keep its public half in
    ``audit.retired_keys_dir``, install a new key, journal ``keys.rotated`` and sign a
    checkpoint with the new key (docs/audit.md, "Replacing the journal key")."""
    from caducee.context import open_journal

    with _opened(args) as (cfg, engine, journal):
        section = cfg.audit
        if journal.signing_key is None:
            raise CliError(f"la clé du journal {section.journal_key_file} est absente")
        with engine.begin() as conn:  # the old key's last word: entries so far
            journal.checkpoint(conn, MANUAL)
        try:
            replaced = keys.replace_journal_key(
                section.journal_key_file, section.retired_keys_dir
            )
        except (OSError, keys.JournalKeyError) as exc:
            raise CliError(f"remplacement de la clé impossible : {exc}") from None
        old_id = keys.key_id(replaced.old.public_key())
        new_id = keys.key_id(replaced.new.public_key())
        new_journal = open_journal(cfg)
        event = AuditEvent(
            Action.KEYS_ROTATED, _actor(), protocol="cli",
            object_ids=(("journal_key", new_id), ("retired_journal_key", old_id)),
        )
        with engine.begin() as conn:
            new_journal.append(conn, [event])
            cp = new_journal.checkpoint(conn, MANUAL, force=True)
        with engine.connect() as conn:
            new_journal.sync_checkpoint_file(conn)
    assert cp is not None
    print(f"nouvelle clé du journal {new_id} ; l'ancienne ({old_id}) est conservée dans "
          f"{replaced.retired_file} pour la vérification")
    print(f"point de contrôle signé avec la nouvelle clé à l'entrée {cp.seq}")
    print("redémarrez les services (caducee run) pour qu'ils signent avec la nouvelle clé")
    return 0
