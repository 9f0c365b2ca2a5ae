"""`caducee account add|passwd|disable|enable|list|cert`."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from pathlib import Path
from typing import Any

from audit.events import Action, AuditEvent
from caducee import config as config_mod
from caducee.cli import CliError
from caducee.context import Context, open_context
from mailstore import accounts
from mailstore.accounts import AccountError
from mailstore.db import Tx

#: Kinds created with this command (patients: `caducee patient add`).
KINDS = ("professional", "organisation", "admin")


def register(sub: Any) -> None:
    acc = sub.add_parser("account", help="professional, organisation and admin accounts")
    s = acc.add_subparsers(dest="account_cmd", required=True)

    add = s.add_parser("add", help="create an account (prints a generated password)")
    add.add_argument("address")
    add.add_argument("--name", default="", help="display name")
    add.add_argument("--kind", choices=KINDS, default="professional")
    add.add_argument("--national-id", default=None,
                     help="practitioner identifier: RPPS or ADELI, or the national "
                          "identifier 8+RPPS / 0+ADELI (stored in that form)")
    add.add_argument("--from-directory", action="store_true",
                     help="take name, kind and identifier from the directory's entry for "
                          "ADDRESS (it must be an active PER/ORG/APP/CAB mailbox)")
    _password_options(add)
    add.set_defaults(func=cmd_add)

    pw = s.add_parser("passwd", help="set a new password")
    pw.add_argument("address")
    _password_options(pw)
    pw.set_defaults(func=cmd_passwd)

    for name, state in (("disable", accounts.DISABLED), ("enable", accounts.ACTIVE)):
        c = s.add_parser(name, help=f"{name} an account")
        c.add_argument("address")
        c.set_defaults(func=cmd_state, state=state)

    ls = s.add_parser("list", help="list accounts")
    ls.add_argument("--kind", default=None)
    ls.set_defaults(func=cmd_list)

    cert = s.add_parser("cert", help="bind (or issue) a client certificate for AUTH EXTERNAL")
    cert.add_argument("address")
    cert.add_argument("--subject", help="certificate identifier (subject serialNumber) to bind")
    cert.add_argument("--issue", type=Path, metavar="DIR",
                      help="issue a certificate from the configured CA into DIR and bind it")
    cert.add_argument("--unbind", action="store_true")
    cert.set_defaults(func=cmd_cert)


def _password_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password-stdin", action="store_true", help="read the password on stdin")
    g.add_argument("--prompt", action="store_true", help="ask for the password")


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password to set and whether it was generated (then it is printed once)."""
    if args.password_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise CliError("no password on stdin")
        return value, False
    if args.prompt:
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise CliError("the passwords differ")
        return first, False
    return secrets.token_urlsafe(12), True


def _with_ctx(args: argparse.Namespace) -> Context:
    return open_context(config_mod.load(args.config), readers=1)


def _journal(ctx: Context, tx: Tx, address: str, what: str) -> None:
    ctx.journal.append(tx.conn, [AuditEvent(
        action=Action.ACCOUNT_CHANGED, actor="cli", protocol="cli",
        object_ids=(("account", address), ("change", what)),
    )])


def cmd_add(args: argparse.Namespace) -> int:
    password, generated = _password(args)
    ctx = _with_ctx(args)
    try:
        def job(tx: Tx) -> accounts.Account:
            kind, name, national_id = args.kind, args.name, args.national_id
            if args.from_directory:
                kind, name, national_id = _from_directory(tx, args.address)
                name = args.name or name
            _hosted(ctx.config, args.address, kind)
            acc = accounts.create_account(
                tx.conn, ctx.keystore, address=args.address, kind=kind,
                display_name=name, password=password, rpps=national_id,
            )
            _journal(ctx, tx, acc.address, "created")
            return acc

        acc = ctx.db.write_sync(job)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    finally:
        ctx.close()
    print(f"created {acc.kind} account {acc.address}")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def _hosted(cfg: config_mod.Config, address: str, kind: str) -> None:
    """A professional or organisation mailbox lives in a domain this platform hosts: mail
    for any other domain goes to its own operator, and the account could neither receive
    nor sign (DKIM) its mail."""
    domain = address.rpartition("@")[2]
    if kind != "admin" and not cfg.is_professional_domain(domain):
        raise CliError(
            f"{address}: {domain.lower()} is not a domain of this platform "
            f"([domains] professional: {', '.join(cfg.domains.professional)})"
        )


def _from_directory(tx: Tx, address: str) -> tuple[str, str, str | None]:
    """(kind, display name, national id) from the directory entry of ``address``."""
    from directory import lookup

    entry = lookup.mailbox(tx.conn, address)
    if entry is None:
        raise CliError(f"{address} is not in the directory (import the extracts first)")
    if not entry.active or entry.mailbox_type not in lookup.REFERENCED_TYPES:
        raise CliError(f"{address}: the directory's mailbox is not active")
    kind = "professional" if entry.mailbox_type in ("PER", "CAB") else "organisation"
    return kind, entry.display_name, entry.national_id


def cmd_passwd(args: argparse.Namespace) -> int:
    password, generated = _password(args)
    ctx = _with_ctx(args)
    try:
        def job(tx: Tx) -> None:
            accounts.set_password(tx.conn, args.address, password)
            _journal(ctx, tx, args.address, "password")

        ctx.db.write_sync(job)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    finally:
        ctx.close()
    print(f"password changed for {args.address}")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    ctx = _with_ctx(args)
    try:
        def job(tx: Tx) -> None:
            accounts.set_state(tx.conn, args.address, args.state)
            _journal(ctx, tx, args.address, args.state)

        ctx.db.write_sync(job)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    finally:
        ctx.close()
    print(f"{args.address} is now {args.state}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    ctx = _with_ctx(args)
    try:
        rows = ctx.db.read_sync(lambda conn: accounts.list_accounts(conn, args.kind))
    finally:
        ctx.close()
    for a in rows:
        print(f"{a.address:<45} {a.kind:<13} {a.state:<9} {a.display_name}")
    return 0


def cmd_cert(args: argparse.Namespace) -> int:
    from caducee import pki

    cfg = config_mod.load(args.config)
    subject: str | None = None if args.unbind else args.subject
    if args.issue:
        ca_key = cfg.tls.client_ca.with_suffix(".key")
        if not ca_key.exists():
            raise CliError(f"{ca_key}: the CA key is not here; issue the certificate elsewhere "
                           "and bind it with --subject")
        ca = pki.load(cfg.tls.client_ca, ca_key)
        subject = subject or "cert-" + secrets.token_hex(6)
        issued = pki.issue_client(ca, args.address, subject, email=args.address)
        args.issue.mkdir(parents=True, exist_ok=True)
        stem = args.address.replace("@", "_at_")
        pki.write_cert(args.issue / f"{stem}.crt", issued.cert)
        pki.write_key(args.issue / f"{stem}.key", issued.key)
        print(f"issued {args.issue / (stem + '.crt')} (identifier {subject})")
    elif subject is None and not args.unbind:
        raise CliError("give --subject ID, --issue DIR or --unbind")
    ctx = open_context(cfg, readers=1)
    try:
        def job(tx: Tx) -> None:
            accounts.set_cert_subject(tx.conn, args.address, subject)
            _journal(ctx, tx, args.address, "certificate")

        ctx.db.write_sync(job)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    finally:
        ctx.close()
    print(f"{args.address}: client certificate identifier {subject or '(none)'}")
    return 0
