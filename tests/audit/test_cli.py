"""`caducee audit …` end to end on a configuration, both backends."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from audit import export_signing
from audit.events import Action, AuditEvent
from audit.keys import create_journal_key
from audit.tables import audit_entry
from caducee import config as config_mod
from caducee.cli import main
from caducee.context import open_journal
from mailstore.db import create_db_engine


@pytest.fixture
def conf(db_url: str, tmp_path: Path) -> Iterator[Path]:
    create_journal_key(tmp_path / "keys" / "journal.key")
    export_signing.create_operator_gpg_key(tmp_path / "keys" / "gnupg", "Opérateur test",
                                           "audit@test.example")
    path = tmp_path / "caducee.toml"
    path.write_text(
        '[server]\nhostname = "mail.test.example"\ndata_dir = "."\n'
        '[domains]\nprofessional = ["test.example"]\n'
        f'[database]\nurl = "{db_url}"\n'
        "[audit]\ncheckpoint_every = 5\n",
        encoding="utf-8",
    )
    yield path
    export_signing.stop_agent(tmp_path / "keys" / "gnupg")


def _append(conf: Path, n: int) -> None:
    cfg = config_mod.load(conf)
    journal = open_journal(cfg)
    engine = create_db_engine(cfg.database_url)
    for i in range(n):
        with engine.begin() as conn:
            journal.append(conn, [AuditEvent(Action.LOGIN_FAILED, f"u{i}@test.example",
                                             outcome="refused", reason="auth_failed",
                                             client_ip="198.51.100.7", protocol="imap")])
    with engine.connect() as conn:  # as the running service does after its commits
        journal.sync_checkpoint_file(conn)
    engine.dispose()


def test_verify_show_export_checkpoint_and_tampering(
    conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(conf, 12)
    c = str(conf)
    assert main(["-c", c, "audit", "verify"]) == 0
    assert "journal intègre : 12 entrées" in capsys.readouterr().out

    assert main(["-c", c, "audit", "checkpoint"]) == 0
    assert "point de contrôle signé à l'entrée 12" in capsys.readouterr().out
    log = (tmp_path / "audit" / "checkpoints.log").read_text().splitlines()
    assert [json.loads(x)["seq"] for x in log] == [5, 10, 12]

    assert main(["-c", c, "audit", "show", "--last", "2", "--json"]) == 0
    shown = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [e["seq"] for e in shown] == [11, 12] and shown[0]["reason"] == "auth_failed"

    out = tmp_path / "export.jsonl"
    assert main(["-c", c, "audit", "export", "--from", "2000-01-01", "-o", str(out)]) == 0
    assert "12 entrées exportées" in capsys.readouterr().out
    assert main(["-c", c, "audit", "keys"]) == 0
    keys_out = capsys.readouterr().out
    pub = keys_out[keys_out.index("-----BEGIN PGP PUBLIC KEY BLOCK-----"):]
    auditor = tmp_path / "auditor"
    auditor.mkdir(mode=0o700)
    (tmp_path / "op.asc").write_text(pub)
    try:
        subprocess.run(["gpg", "--homedir", str(auditor), "--batch", "--import",
                        str(tmp_path / "op.asc")], check=True, capture_output=True)
        assert subprocess.run(["gpg", "--homedir", str(auditor), "--batch", "--verify",
                               f"{out}.asc", str(out)], capture_output=True).returncode == 0
    finally:
        export_signing.stop_agent(auditor)

    # the export itself was journaled
    assert main(["-c", c, "audit", "show", "--last", "1", "--action", "audit.exported"]) == 0
    assert "audit.exported" in capsys.readouterr().out

    cfg = config_mod.load(conf)
    engine = create_db_engine(cfg.database_url)
    with engine.begin() as conn:
        conn.execute(update(audit_entry).where(audit_entry.c.seq == 7)
                     .values(client_ip="203.0.113.1"))
    engine.dispose()
    assert main(["-c", c, "audit", "verify"]) == 1
    text = capsys.readouterr().out
    assert "JOURNAL ALTÉRÉ : première anomalie à l'entrée 7 (modification)" in text
    assert main(["-c", c, "audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"][0]["seq"] == 7 and report["problems"][0]["kind"] == "edited"


def test_prune_respects_retention(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _append(conf, 3)
    assert main(["-c", str(conf), "audit", "prune", "--before", "2999-01-01"]) == 1
    assert "durée de conservation est de 183 jours" in capsys.readouterr().err
    assert main(["-c", str(conf), "audit", "prune", "--dry-run"]) == 0
    assert "aucune entrée à supprimer" in capsys.readouterr().out


def test_missing_checkpoint_file_is_a_problem_unless_allowed(
    conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _append(conf, 12)  # checkpoints at 5 and 10, in the database and the file
    c = str(conf)
    cp_file = tmp_path / "audit" / "checkpoints.log"
    assert cp_file.exists()
    cp_file.unlink()
    assert main(["-c", c, "audit", "verify"]) == 1
    text = capsys.readouterr().out
    assert "première anomalie à l'entrée 5 (fichier de points de contrôle absent)" in text
    assert not cp_file.exists(), "verify must not re-create the file it reports missing"
    assert main(["-c", c, "audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in report["problems"]] == ["checkpoint_file_missing"]
    assert main(["-c", c, "audit", "verify", "--allow-missing-file"]) == 0
    text = capsys.readouterr().out
    assert "journal intègre : 12 entrées" in text and "n'existe pas" in text
    assert "recréé à partir de la base (2 points de contrôle)" in text
    assert [json.loads(x)["seq"] for x in cp_file.read_text().splitlines()] == [5, 10]
    assert main(["-c", c, "audit", "verify"]) == 0
    capsys.readouterr()


def test_rotate_key_keeps_old_checkpoints_verifiable(
    conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audit.checkpoints import load_all
    from audit.keys import key_id, load_journal_key

    c = str(conf)
    key_file = tmp_path / "keys" / "journal.key"
    old_id = key_id(load_journal_key(key_file).public_key())
    _append(conf, 7)  # old key: checkpoint at 5
    assert main(["-c", c, "audit", "rotate-key"]) == 0
    out = capsys.readouterr().out
    new_id = key_id(load_journal_key(key_file).public_key())
    assert new_id != old_id and f"nouvelle clé du journal {new_id}" in out
    assert (tmp_path / "keys" / "journal-retired" / f"{old_id}.pub").exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    _append(conf, 6)  # new key: a checkpoint on the way
    assert main(["-c", c, "audit", "verify"]) == 0
    assert "journal intègre : 14 entrées" in capsys.readouterr().out

    cfg = config_mod.load(conf)
    engine = create_db_engine(cfg.database_url)
    try:
        with engine.connect() as conn:
            signers = [(cp.seq, cp.key_id) for cp in load_all(conn)]
            rotated = conn.execute(
                select(audit_entry.c.seq, audit_entry.c.actor, audit_entry.c.object_ids)
                .where(audit_entry.c.action == "keys.rotated")
            ).all()
    finally:
        engine.dispose()
    # the old key signed 5 and the head before the change (7); the new key, the rest
    assert signers[:2] == [(5, old_id), (7, old_id)]
    assert signers[2] == (8, new_id) and all(k == new_id for _, k in signers[2:])
    assert len(rotated) == 1 and rotated[0][0] == 8 and rotated[0][1].startswith("cli:")
    assert json.loads(rotated[0][2]) == [["journal_key", new_id],
                                         ["retired_journal_key", old_id]]
    lines = [json.loads(x) for x in (tmp_path / "audit" / "checkpoints.log").read_text()
             .splitlines()]
    assert {x["key"] for x in lines} == {old_id, new_id}

    # `audit keys` hands the auditor both keys; exports carry the retired one too
    assert main(["-c", c, "audit", "keys"]) == 0
    keys_out = capsys.readouterr().out
    assert f"clé du journal {new_id} (actuelle" in keys_out
    assert f"clé du journal {old_id} (retirée" in keys_out
    out_file = tmp_path / "export.jsonl"
    assert main(["-c", c, "audit", "export", "--no-sign", "-o", str(out_file)]) == 0
    capsys.readouterr()
    from audit.export import check_export

    checked = check_export(out_file)
    assert checked.ok, checked.problems
    assert checked.checkpoints >= 3

    # without the retired key, the old checkpoints no longer verify: the setting matters
    (tmp_path / "keys" / "journal-retired" / f"{old_id}.pub").unlink()
    assert main(["-c", c, "audit", "verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {p["kind"] for p in report["problems"]} == {"bad_signature"}
    assert min(p["seq"] for p in report["problems"]) == 5


def test_init_creates_the_checkpoint_file(
    empty_db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "fresh"
    assert main(["init", str(d), "--database-url", empty_db_url]) == 0
    cp_file = d / "audit" / "checkpoints.log"
    try:
        assert cp_file.exists() and cp_file.stat().st_size == 0
        assert oct(cp_file.stat().st_mode & 0o777) == "0o600"
        capsys.readouterr()
        assert main(["-c", str(d / "caducee.toml"), "audit", "verify"]) == 0
        assert "journal intègre : 0 entrées" in capsys.readouterr().out
    finally:
        export_signing.stop_agent(d / "keys" / "gnupg")
