"""``caducee audit show`` writes journal values to the officer's terminal: a value that
came from the network (the user name of a failed HTTP Basic, SMTP or IMAP login) must not
be able to start a new line, move the cursor back or send an escape sequence — which would
disguise a failed login as a successful one, or forge whole lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.events import Outcome, login_event
from caducee import config as config_mod
from caducee.cli import main
from caducee.context import open_journal
from mailstore.db import create_db_engine

#: A user name as an attacker sends it in ``Authorization: Basic`` (no ":" in it).
FORGED = (
    "evil\x1b[2K\r      7 2026-12-02 16.45.13 login.succeeded      ok       "
    "admin@demo.mssante.fr ip=10.0.0.1\n      8 forged line\u202eright-to-left\\x41"
)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    assert main(["init", str(tmp_path / "inst"), "--port-base", "0"]) == 0
    path = tmp_path / "inst" / "caducee.toml"
    cfg = config_mod.load(path)
    journal = open_journal(cfg)
    engine = create_db_engine(cfg.database_url)
    try:
        with engine.begin() as conn:
            journal.append(conn, [login_event(FORGED, Outcome.FAILED, "auth_failed",
                                              client_ip="192.0.2.7", protocol="web")])
    finally:
        engine.dispose()
    return path


def test_show_escapes_control_characters(
    conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["-c", str(conf), "audit", "show", "--last", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 1, out  # one entry, one line
    line = lines[0]
    assert "\x1b" not in line and "\r" not in line and "\u202e" not in line
    assert "login.failed" in line and "reason=auth_failed" in line
    assert line.split()[1:4][-1] == "login.failed"  # seq, date, time, action
    # escaped, still readable, and a literal backslash cannot imitate an escape
    assert "evil\\x1b[2K\\x0d      7 2026" in line
    assert "\\x0a      8 forged line\\u202eright-to-left\\\\x41" in line


def test_show_json_keeps_the_value(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON output is escaped by JSON itself and gives the stored value back."""
    capsys.readouterr()
    assert main(["-c", str(conf), "audit", "show", "--last", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1
    assert json.loads(out)["actor"] == FORGED
