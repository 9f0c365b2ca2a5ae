"""The `caducee` command: init, accounts, key rotation, exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from caducee.cli import main
from mailstore import accounts


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "caducee", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("init") / "data"
    r = run("init", str(d), "--port-base", "20000")
    assert r.returncode == 0, r.stderr
    assert "caducee._domainkey.demo.mssante.fr  v=DKIM1; k=rsa; p=" in r.stdout
    return d


def test_init_writes_private_keys_and_a_loadable_config(initialised: Path) -> None:
    d = initialised
    for secret in ("keys/master.key", "keys/dkim.key", "keys/journal.key", "tls/ca.key",
                   "tls/server.key"):
        assert (d / secret).stat().st_mode & 0o777 == 0o600, secret
    text = (d / "caducee.toml").read_text()
    assert 'listen = ["127.0.0.1:20587"]' in text
    again = run("init", str(d))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_account_lifecycle(initialised: Path) -> None:
    cfg = str(initialised / "caducee.toml")
    r = run("-c", cfg, "account", "add", "jean.dupont@demo.mssante.fr", "--name", "Jean Dupont")
    assert r.returncode == 0, r.stderr
    assert "password (shown once): " in r.stdout
    dup = run("-c", cfg, "account", "add", "jean.dupont@demo.mssante.fr")
    assert dup.returncode == 1 and "already exists" in dup.stderr
    elsewhere = run("-c", cfg, "account", "add", "jean.dupont@autre-operateur.mssante.fr")
    assert elsewhere.returncode == 1, elsewhere.stderr
    assert ("jean.dupont@autre-operateur.mssante.fr: autre-operateur.mssante.fr is not a "
            "domain of this platform ([domains] professional: demo.mssante.fr)") in elsewhere.stderr
    assert "autre-operateur" not in run("-c", cfg, "account", "list").stdout
    r = run("-c", cfg, "account", "passwd", "jean.dupont@demo.mssante.fr", "--password-stdin",
            stdin="a-new-long-password\n")
    assert r.returncode == 0, r.stderr
    assert run("-c", cfg, "account", "disable", "jean.dupont@demo.mssante.fr").returncode == 0
    listing = run("-c", cfg, "account", "list").stdout
    assert "jean.dupont@demo.mssante.fr" in listing and "disabled" in listing
    missing = run("-c", cfg, "account", "passwd", "ghost@demo.mssante.fr", "--password-stdin",
                  stdin="whatever-long\n")
    assert missing.returncode == 1 and "no account ghost@demo.mssante.fr" in missing.stderr


def test_keys_rotate_keeps_mail_readable(initialised: Path) -> None:
    from caducee import config
    from caducee.context import open_context
    from mailstore import messages

    cfg_path = initialised / "caducee.toml"
    cfg = config.load(cfg_path)
    ctx = open_context(cfg)
    try:
        def setup(tx):
            acc = accounts.create_account(tx.conn, ctx.keystore, address="rot@demo.mssante.fr",
                                          kind="professional")
            inbox = accounts.mailbox_id(tx.conn, acc.id, "INBOX")
            assert inbox is not None
            return acc, messages.append_message(tx, ctx.keystore, acc.id, inbox, b"S: x\r\n\r\nq\r\n")
        acc, stored = ctx.db.write_sync(setup)
    finally:
        ctx.close()
    old_key = (initialised / "keys/master.key").read_text()
    r = run("-c", str(cfg_path), "keys", "rotate")
    assert r.returncode == 0, r.stderr
    new_key = (initialised / "keys/master.key").read_text()
    assert new_key != old_key and len(new_key.splitlines()) == 2  # header + one key
    ctx = open_context(config.load(cfg_path))
    try:
        body = ctx.db.read_sync(lambda c: messages.read_body(c, ctx.keystore, acc.id, stored.blob_id))
    finally:
        ctx.close()
    assert body == b"S: x\r\n\r\nq\r\n"


def test_bad_config_exits_2_with_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text('[server]\nhostname = "h.fr"\n[domains]\nprofessional = "nope"\n')
    assert main(["-c", str(bad), "account", "list"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: key «domains.professional»: expected a list" in err


def test_dkim_dns(initialised: Path) -> None:
    r = run("-c", str(initialised / "caducee.toml"), "dkim", "dns")
    assert r.returncode == 0
    assert 'caducee._domainkey.demo.mssante.fr. IN TXT "v=DKIM1; k=rsa; p=' in r.stdout
    assert os.environ.get("CADUCEE_MASTER_KEY") is None


def test_demo_prepares_everything_and_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    first = run("demo", "--data-dir", str(d), "--port-base", "21000", "--no-run")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "claire.martin@demo.mssante.fr" in out and "passwords shown once" in out
    assert "demo Annuaire Santé extracts imported" in out
    assert "279035121518989@patient.demo.mssante.fr" in out and "activation code" in out
    assert "port 21587 (STARTTLS)" in out and "port 21993 (TLS)" in out
    again = run("demo", "--data-dir", str(d), "--port-base", "21000", "--no-run")
    assert again.returncode == 0, again.stderr
    assert "Demo accounts already exist" in again.stdout
    assert "activation code" not in again.stdout
    found = run("-c", str(d / "caducee.toml"), "directory", "search", "lefevre")
    assert found.returncode == 0 and "paul.lefevre@demo.mssante.fr" in found.stdout


def _init_with_demo_directory(tmp_path: Path, port_base: str) -> str:
    """``caducee init`` then an import of the demo extracts; return the config's path."""
    d = tmp_path / "dir"
    assert run("init", str(d), "--port-base", port_base).returncode == 0
    cfg = str(d / "caducee.toml")
    demo = Path(__file__).resolve().parents[2] / "conf" / "demo"
    imp = run("-c", cfg, "directory", "import", *map(str, sorted(demo.glob("*_demo.txt"))))
    assert imp.returncode == 0, imp.stderr
    return cfg


def test_account_from_directory(tmp_path: Path) -> None:
    cfg = _init_with_demo_directory(tmp_path, "22000")
    r = run("-c", cfg, "account", "add", "paul.lefevre@demo.mssante.fr", "--from-directory")
    assert r.returncode == 0, r.stderr
    listing = run("-c", cfg, "account", "list").stdout
    assert "paul.lefevre@demo.mssante.fr" in listing and "LEFÈVRE" in listing
    missing = run("-c", cfg, "account", "add", "nobody@demo.mssante.fr", "--from-directory")
    assert missing.returncode == 1 and "not in the directory" in missing.stderr
    inactive = run("-c", cfg, "directory", "deactivate", "sophie.bernard@demo.mssante.fr")
    assert inactive.returncode == 0, inactive.stderr
    refused = run("-c", cfg, "account", "add", "sophie.bernard@demo.mssante.fr",
                  "--from-directory")
    assert refused.returncode == 1 and "is not active" in refused.stderr


def test_a_bare_rpps_is_stored_as_the_national_identifier(tmp_path: Path) -> None:
    """An account given an 11-digit RPPS matches the directory's ``8``+RPPS (policy.senders)."""
    from benchmarks.gen_extract import DEMO_PEOPLE
    from caducee import config
    from directory import lookup
    from mailstore.db import create_db_engine
    from policy.senders import AccountKind, SenderAccount, check_sender_referenced

    cfg = _init_with_demo_directory(tmp_path, "22100")
    claire = next(p for p in DEMO_PEOPLE if p.address.startswith("claire."))
    assert len(claire.rpps) == 11
    r = run("-c", cfg, "account", "add", claire.address, "--national-id", claire.rpps)
    assert r.returncode == 0, r.stderr
    bad = run("-c", cfg, "account", "add", "x@demo.mssante.fr", "--national-id", "12345")
    assert bad.returncode == 1 and "not a practitioner identifier: '12345'" in bad.stderr

    engine = create_db_engine(config.load(Path(cfg)).database_url)
    try:
        with engine.connect() as conn:
            acc = accounts.get_by_address(conn, claire.address)
            entry = lookup.mailbox(conn, claire.address)
    finally:
        engine.dispose()
    assert acc is not None and entry is not None
    assert acc.rpps == "8" + claire.rpps == entry.national_id
    facts = SenderAccount(address=acc.address, kind=AccountKind(acc.kind), active=acc.active,
                          directory=entry.fact(), national_id=acc.rpps)
    assert check_sender_referenced(facts).allowed


def test_command_owners_match_what_the_modules_register() -> None:
    import argparse
    import importlib

    from caducee.cli import COMMAND_MODULES, COMMAND_OWNERS, command_of

    owners: dict[str, str] = {}
    for name in COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        importlib.import_module(name).register(sub)
        owners.update(dict.fromkeys(sub.choices, name))
    assert owners == COMMAND_OWNERS
    assert command_of(["-c", "x.toml", "run", "--services", "imap"]) == "run"
    assert command_of(["--config=x.toml", "audit", "verify"]) == "audit"
    assert command_of(["--help"]) is None


def test_run_loads_only_its_own_command_module() -> None:
    import subprocess
    import sys

    code = ("import sys; from caducee.cli import build_parser; build_parser('run'); "
            "print(sorted(m for m in sys.modules if m.startswith('caducee.cmd_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "['caducee.cmd_run']"
