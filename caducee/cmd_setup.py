"""`caducee init`, `caducee db upgrade`, `caducee keys rotate`, `caducee dkim dns`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from caducee import config as config_mod
from caducee.cli import CliError
from caducee.setup_files import PORTS, InitOptions, write_all


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="write a working configuration, certificates and keys")
    p.add_argument("directory", type=Path)
    p.add_argument("--hostname", default="mail.demo.mssante.fr")
    p.add_argument("--domain", action="append", dest="domains",
                   help="professional mail domain (repeatable; default demo.mssante.fr)")
    p.add_argument("--patient-domain", default="")
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--port-base", type=int, default=10000,
                   help="ports are base+587, base+465, base+143, base+993, base+443 "
                        "(0 for the standard ports)")
    p.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                   help=f"override one port ({', '.join(PORTS)})")
    p.add_argument("--database-url", default="")
    p.add_argument("--force", action="store_true", help="overwrite an existing configuration")
    p.set_defaults(func=cmd_init)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    up = db.add_parser("upgrade", help="apply the migrations")
    up.set_defaults(func=cmd_db_upgrade)

    keys = sub.add_parser("keys", help="encryption keys").add_subparsers(
        dest="keys_cmd", required=True
    )
    rot = keys.add_parser("rotate", help="new master key; re-wrap every data key")
    rot.set_defaults(func=cmd_keys_rotate)

    dk = sub.add_parser("dkim", help="DKIM").add_subparsers(dest="dkim_cmd", required=True)
    dns = dk.add_parser("dns", help="print the DNS TXT records to publish")
    dns.set_defaults(func=cmd_dkim_dns)


def parse_ports(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in PORTS or not value.isdigit():
            raise CliError(f"--port {item!r}: expected NAME=PORT with NAME in {', '.join(PORTS)}")
        out[name] = int(value)
    return out


def init_directory(args: argparse.Namespace, *, quiet: bool = False) -> Path:
    directory: Path = args.directory
    cfg_path = directory / "caducee.toml"
    if cfg_path.exists() and not args.force:
        raise CliError(f"{cfg_path} already exists (use --force to overwrite)")
    opts = InitOptions(
        directory=directory,
        hostname=args.hostname,
        domains=args.domains or ["demo.mssante.fr"],
        patient_domain=args.patient_domain,
        listen_host=args.listen_host,
        port_base=args.port_base,
        ports=parse_ports(args.port),
        database_url=args.database_url,
    )
    result = write_all(opts)
    # Check what we just wrote, then create the schema.
    cfg = config_mod.load(result.config_path)
    upgrade_schema(cfg)
    from audit.checkpoints import create_file

    create_file(cfg.audit.checkpoint_file)  # from now on, its absence is reported by verify
    if not quiet:
        print(f"Configuration written to {result.config_path}")
        print(f"Master key: {cfg.keys.master_key_file} (mode 0600) — back it up, keep it secret.")
        print(f"TLS: CA {cfg.tls.client_ca}; clients must trust it.")
        print(f"Demo client certificate: {result.client_p12} "
              f"(PKCS#12 password: {result.client_p12_password})")
        print("Publish these DKIM records (TXT):")
        for name, value in result.dkim_records.items():
            print(f"  {name}  {value}")
    return result.config_path


def upgrade_schema(cfg: config_mod.Config) -> None:
    from caducee.dbschema import upgrade
    from mailstore.db import create_db_engine

    engine = create_db_engine(cfg.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def cmd_init(args: argparse.Namespace) -> int:
    init_directory(args)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    upgrade_schema(cfg)
    print("database is up to date")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Crash-safe rotation: key file with both keys → re-wrap in one transaction → new key only."""
    from audit.events import Action, AuditEvent
    from caducee.context import open_context

    cfg = config_mod.load(args.config)
    ctx = open_context(cfg)
    try:
        new_ring = ctx.ring.with_new_current()
        new_ring.save(cfg.keys.master_key_file)

        def job(tx: Any) -> int:
            n = ctx.keystore.rotate(tx.conn, new_ring)
            ctx.journal.append(tx.conn, [AuditEvent(
                action=Action.KEYS_ROTATED, actor="cli", protocol="cli",
                object_ids=(("master_key", new_ring.current_id),),
            )])
            return n

        count = ctx.db.write_sync(job)
        new_ring.only_current().save(cfg.keys.master_key_file)
    finally:
        ctx.close()
    print(f"re-wrapped {count} data keys with master key {new_ring.current_id}")
    return 0


def cmd_dkim_dns(args: argparse.Namespace) -> int:
    from smtp_gateway.dkim_sign import DkimSigner

    cfg = config_mod.load(args.config)
    for domain in [*cfg.domains.professional, cfg.domains.patient]:
        signer = DkimSigner.from_pem_file(cfg.dkim.key_file, domain, cfg.dkim.selector)
        sys.stdout.write(f"{cfg.dkim.selector}._domainkey.{domain}. IN TXT "
                         f"\"{signer.dns_record()}\"\n")
    return 0
