"""`caducee run` and `caducee demo`."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caducee import config as config_mod
from caducee import logsetup
from caducee.cli import CliError
from caducee.context import Context, open_context
from caducee.runner import ALL_SERVICES, Platform, serve

#: Demo data shipped with the repository (conf/demo).
DEMO_DIR = Path(__file__).resolve().parents[1] / "conf" / "demo"


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the configured services in the foreground")
    p.add_argument("--services", default=",".join(ALL_SERVICES),
                   help=f"comma-separated subset of: {', '.join(ALL_SERVICES)}")
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="initialise a demo platform (if needed) and run it")
    d.add_argument("--data-dir", type=Path, default=Path("demo-data"))
    d.add_argument("--port-base", type=int, default=10000)
    d.add_argument("--hostname", default="mail.demo.mssante.fr")
    d.add_argument("--demo-files", type=Path, default=DEMO_DIR)
    d.add_argument("--no-run", action="store_true", help="prepare everything, do not run")
    d.set_defaults(func=cmd_demo)


def _services(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [n for n in names if n not in ALL_SERVICES]
    if unknown:
        known = ", ".join(ALL_SERVICES)
        raise CliError(f"unknown service(s) {', '.join(unknown)} (known: {known})")
    return names


def run_config(cfg: config_mod.Config, services: tuple[str, ...], banner: str = "") -> int:
    os.umask(0o077)  # databases, spools and logs are private to the service's user
    logsetup.setup(cfg.server.log_format, cfg.server.log_level)
    ctx = open_context(cfg)

    def on_ready(_platform: Platform) -> None:
        if banner:
            print(banner, flush=True)

    try:
        return asyncio.run(serve(ctx, services, on_ready))
    finally:
        ctx.close()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    return run_config(cfg, _services(args.services))


# -- demo ----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from caducee.cmd_setup import init_directory, upgrade_schema

    data_dir: Path = args.data_dir.resolve()
    cfg_path = data_dir / "caducee.toml"
    if not cfg_path.exists():
        init_args = argparse.Namespace(
            directory=data_dir, hostname=args.hostname, domains=None, patient_domain="",
            listen_host="127.0.0.1", port_base=args.port_base, port=[], database_url="",
            force=False,
        )
        init_directory(init_args)
    cfg = config_mod.load(cfg_path)
    upgrade_schema(cfg)
    ctx = open_context(cfg)
    try:
        imported = import_demo_directory(ctx, args.demo_files)
        created = create_demo_accounts(ctx, args.demo_files)
        patients = create_demo_patients(ctx)
    finally:
        ctx.close()
    banner = demo_banner(cfg, created, patients, imported)
    if args.no_run:
        print(banner)
        return 0
    return run_config(cfg, ALL_SERVICES, banner)


#: The demo patient (a valid INS: DOMAIN.md §3's example).
DEMO_PATIENTS = (("279035121518989", "Jeanne DUPONT", "jeanne.dupont@example.org"),)


def import_demo_directory(ctx: Context, demo_files: Path) -> bool:
    """Import the demo Annuaire Santé extracts once (an import is one transaction)."""
    from sqlalchemy import text

    from directory import importer

    has_rows = ctx.db.read_sync(
        lambda c: c.execute(text("SELECT 1 FROM directory_mailbox LIMIT 1")).first() is not None
    )
    if has_rows:
        return False
    files = sorted(demo_files.glob("*_demo.txt"))
    if not files:
        raise CliError(f"{demo_files}: no demo directory extract (*_demo.txt)")
    report = ctx.config.server.data_dir / "directory-import-demo.txt"
    importer.import_files(
        ctx.db.engine, files,
        importer.ImportOptions(actor="cli:demo", report_path=report, journal=ctx.journal),
    )
    return True


def create_demo_patients(ctx: Context) -> list[tuple[str, str, str]]:
    """Create the demo patients that do not exist yet; return (address, name, code)."""
    from datetime import UTC, datetime

    from mailstore import policy_patients

    out = []
    for ins, name, email in DEMO_PATIENTS:
        def job(tx: Any, ins: str = ins, name: str = name, email: str = email) -> Any:
            if policy_patients.get_profile(tx.conn, ins) is not None:
                return None
            return policy_patients.add_patient(
                tx.conn, ctx.keystore, ins=ins, patient_domain=ctx.config.domains.patient,
                display_name=name, notification_email=email, now=datetime.now(UTC),
            )

        result = ctx.db.write_sync(job)
        if result is not None:
            account, code = result
            out.append((account.address, name, code))
    return out


def create_demo_accounts(ctx: Context, demo_files: Path) -> list[tuple[str, str, str]]:
    """Create the demo professionals that do not exist yet; return (address, name, password)."""
    from mailstore import accounts

    path = demo_files / "demo_accounts.toml"
    if not path.exists():
        raise CliError(f"{path}: demo accounts file is missing")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    created: list[tuple[str, str, str]] = []
    for i, entry in enumerate(data.get("account", []), 1):
        for key in ("address", "display_name", "kind"):
            if key not in entry:
                raise CliError(f"{path}: account #{i}: key «{key}» is missing")
        address = entry["address"]

        def job(tx: Any, entry: dict[str, Any] = entry) -> str | None:
            if accounts.get_by_address(tx.conn, entry["address"]) is not None:
                return None
            password = secrets.token_urlsafe(9)
            accounts.create_account(
                tx.conn, ctx.keystore, address=entry["address"], kind=entry["kind"],
                display_name=entry["display_name"], password=password,
                rpps=entry.get("national_id"), cert_subject=entry.get("cert_subject"),
            )
            return password

        password = ctx.db.write_sync(job)
        if password is not None:
            created.append((address, entry["display_name"], password))
    return created


def demo_banner(
    cfg: config_mod.Config, created: list[tuple[str, str, str]],
    patients: Sequence[tuple[str, str, str]] = (), imported: bool = False,
) -> str:
    sub = cfg.submission.listen[0]
    subs = cfg.submission.implicit_tls_listen[0]
    lines = [
        "",
        "Caducée demo is starting.",
        f"  data directory : {cfg.server.data_dir}",
        f"  database       : {cfg.database_url}",
        f"  CA to trust    : {cfg.tls.client_ca}",
        f"  SMTP submission: {sub.host} port {sub.port} (STARTTLS), "
        f"port {subs.port} (TLS), AUTH PLAIN/LOGIN",
        f"  IMAP           : {cfg.imap.listen[0].host} port {cfg.imap.listen[0].port} (STARTTLS), "
        f"port {cfg.imap.implicit_tls_listen[0].port} (TLS)",
        f"  HTTPS API      : https://localhost:{cfg.web.listen[0].port}/api/directory?q=… "
        "(HTTP Basic, a professional's address and password)",
        f"  MTA (operators): port {cfg.mta.listen[0].port} (STARTTLS, client certificate)",
    ]
    if created:
        lines.append("  Demo accounts (passwords shown once; reset with `caducee account passwd`):")
        for address, name, password in created:
            lines.append(f"    {address:<40} {password}   ({name})")
    else:
        lines.append("  Demo accounts already exist; reset a password with "
                     f"`caducee -c {cfg.path} account passwd ADDRESS`.")
    if imported:
        lines.append("  Directory      : demo Annuaire Santé extracts imported "
                     "(`caducee directory search …`)")
    for address, name, code in patients:
        lines.append(f"  Demo patient   : {address} ({name}), activation code {code} "
                     "(`caducee patient activate`)")
    first = created[0][0] if created else "claire.martin@demo.mssante.fr"
    lines += [
        "  Try it:",
        f"    swaks --server {sub.host}:{sub.port} --tls --tls-ca-path {cfg.tls.client_ca} \\",
        f"          --auth-user {first} --auth-password '…' \\",
        f"          --from {first} --to paul.lefevre@demo.mssante.fr",
        "  Stop with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)
