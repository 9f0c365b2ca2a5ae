"""The administration commands journal what they change, in the same transaction, and the
journal still verifies: directory imports, trust-list changes, master key rotation,
account and permission changes (both backends)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from audit.tables import audit_entry
from audit.verify import verify
from caducee.cli import main
from tests.support.platform import PlatformDir, database_url, make_platform_dir

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "conf" / "demo"
INS = "279035121518989"
PHARMACY = "pharmacie.centrale@demo.mssante.fr"


@pytest.fixture
def pdir(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[PlatformDir]:
    url = database_url(request, backend)
    yield make_platform_dir(tmp_path / "p", url)


def _run(pdir: PlatformDir, *argv: str) -> None:
    assert main(["-c", str(pdir.config_path), *argv]) == 0, argv


def _entries(pdir: PlatformDir) -> list[dict[str, Any]]:
    ctx = pdir.context()
    try:
        rows = ctx.db.read_sync(lambda c: [dict(r) for r in c.execute(
            select(audit_entry).order_by(audit_entry.c.seq)).mappings()])
        report = ctx.db.read_sync(lambda c: verify(c, ctx.journal.verify_keys))
    finally:
        ctx.close()
    assert report.ok, report.problems
    for r in rows:
        r["objects"] = dict(json.loads(r["object_ids"]))
    return rows


def test_admin_commands_are_journaled(
    pdir: PlatformDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(pdir, "directory", "import", str(DEMO / "PS_LibreAcces_Personne_activite_demo.txt"),
         str(DEMO / "Extraction_Correspondance_MSSante_demo.txt"),
         "--report", str(tmp_path / "report.txt"))
    _run(pdir, "trust", "add", "a.mssante.fr", "b.mssante.fr")
    _run(pdir, "trust", "remove", "b.mssante.fr")
    listing = tmp_path / "lb.txt"
    listing.write_text("c.mssante.fr\nd.mssante.fr\n", encoding="utf-8")
    _run(pdir, "trust", "import", str(listing), "--source", "liste-test")
    _run(pdir, "account", "add", "new.doc@demo.mssante.fr", "--name", "Dr Nouveau")
    _run(pdir, "account", "disable", "new.doc@demo.mssante.fr")
    _run(pdir, "patient", "add", "--ins", INS, "--name", "Jeanne Patiente",
         "--email", "jeanne@example.org")
    _run(pdir, "patient", "pharmacy", "grant", "--ins", INS, "--pharmacy", PHARMACY)
    _run(pdir, "keys", "rotate")
    out = capsys.readouterr().out
    entries = _entries(pdir)
    by_action: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_action.setdefault(e["action"], []).append(e)

    (imported,) = by_action["directory.imported"]
    assert imported["protocol"] == "cli" and imported["outcome"] == "ok"
    assert imported["objects"]["directory_import"].isdigit()

    trust = [e["objects"] for e in by_action["trust.changed"]]
    assert trust == [
        {"change": "add", "domains": "a.mssante.fr,b.mssante.fr"},
        {"change": "remove", "domains": "b.mssante.fr"},
        {"change": "import", "source": "liste-test", "added": "2", "removed": "0"},
    ]

    accounts = [(e["objects"], e["patient_ins"]) for e in by_action["account.changed"]]
    assert ({"account": "new.doc@demo.mssante.fr", "change": "created"}, None) in accounts
    assert ({"account": "new.doc@demo.mssante.fr", "change": "disabled"}, None) in accounts
    assert ({"change": "patient created"}, INS) in accounts

    (perm,) = by_action["permission.changed"]
    assert perm["patient_ins"] == INS
    assert perm["objects"] == {"change": "pharmacy grant", "address": PHARMACY}

    (rotated,) = by_action["keys.rotated"]
    master = rotated["objects"]["master_key"]
    assert master and f"master key {master}" in out
    # each entry is in the order the commands ran
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1]["action"] == "keys.rotated"
    # no display name, password or e-mail address in the journal
    text = repr(entries)
    for secret in ("Dr Nouveau", "Jeanne Patiente", "jeanne@example.org"):
        assert secret not in text


def test_refused_directory_import_is_journaled(pdir: PlatformDir, tmp_path: Path) -> None:
    bad = tmp_path / "PS_LibreAcces_Personne_activite_bad.txt"
    lines = (DEMO / "PS_LibreAcces_Personne_activite_demo.txt").read_text(
        encoding="utf-8").splitlines()
    cols = lines[2].split("|")
    cols[9] = "77"  # an unknown profession code: an error, refused with --strict
    bad.write_text("\n".join([lines[0], lines[1], "|".join(cols)]) + "\n", encoding="utf-8")
    code = main(["-c", str(pdir.config_path), "directory", "import", str(bad), "--strict",
                 "--report", str(tmp_path / "r.txt")])
    assert code != 0
    entries = _entries(pdir)
    refused = [e for e in entries if e["action"] == "directory.imported"]
    assert [(e["outcome"], e["reason"], e["protocol"]) for e in refused] == [
        ("refused", "import_refused", "cli")]
