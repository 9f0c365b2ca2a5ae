"""Exports: JSON Lines checked by the real gpg of an outside auditor; a modified byte fails."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from audit import export_signing
from audit.export import check_export, export
from audit.journal import Journal
from tests.audit.conftest import event, fill

INS = "255081416802538"


@pytest.fixture(scope="module")
def operator_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    home = tmp_path_factory.mktemp("gpg") / "operator"
    fpr = export_signing.create_operator_gpg_key(home, "Opérateur de démonstration",
                                                 "audit@demo.example")
    yield home, fpr
    export_signing.stop_agent(home)


def _auditor_verify(tmp_path: Path, pub: str, data: Path, sig: Path) -> int:
    """What the auditor does with stock gpg: a fresh home holding only the public key."""
    home = tmp_path / "auditor"
    home.mkdir(mode=0o700, exist_ok=True)
    (tmp_path / "operator.asc").write_text(pub)
    try:
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import",
                        str(tmp_path / "operator.asc")], check=True, capture_output=True)
        return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--verify",
                               str(sig), str(data)], capture_output=True).returncode
    finally:
        export_signing.stop_agent(home)


def test_export_is_verified_by_gpg_and_tampering_fails(
    engine: Engine, journal: Journal, tmp_path: Path, operator_home: tuple[Path, str]
) -> None:
    fill(engine, journal, 30)
    with engine.begin() as conn:
        journal.append(conn, [event(99, patient_ins=INS, action="patient_data.read")])
    out = tmp_path / "export.jsonl"
    assert journal.signing_key is not None
    with engine.connect() as conn:
        res = export(conn, out, journal_key=journal.signing_key.public_key())
    assert res.entries == 31 and (res.first_seq, res.last_seq) == (1, 31)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[-1] == {
        "type": "footer", "entries": 31, "first_seq": 1, "last_seq": 31}
    assert sum(1 for x in lines if x["type"] == "checkpoint") == 3
    assert check_export(out).ok

    home, fpr = operator_home
    sig = export_signing.sign_detached(home, out)
    assert sig.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    pub = export_signing.export_public_key(home, fpr)
    assert _auditor_verify(tmp_path, pub, out, sig) == 0

    data = out.read_bytes()
    i = data.index(b"dr.3@hopital")
    out.write_bytes(data[:i] + b"D" + data[i + 1:])  # one byte changed
    assert _auditor_verify(tmp_path, pub, out, sig) != 0
    problems = check_export(out).problems
    assert problems and "ne correspond pas" in problems[0]


def test_patient_export_holds_only_that_patient(
    engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    fill(engine, journal, 12)
    with engine.begin() as conn:
        journal.append(conn, [event(1, patient_ins=INS), event(2), event(3, patient_ins=INS)])
    out = tmp_path / "patient.jsonl"
    with engine.connect() as conn:
        res = export(conn, out, patient_ins=INS,
                     since=datetime(2020, 1, 1, tzinfo=UTC), until=datetime(2100, 1, 1, tzinfo=UTC))
    entries = [json.loads(x) for x in out.read_text().splitlines()]
    entries = [e for e in entries if e["type"] == "entry"]
    assert res.entries == 2 and [e["seq"] for e in entries] == [13, 15]
    assert all(e["patient_ins"] == INS for e in entries)
    assert check_export(out).ok  # each entry re-hashes on its own, from its "prev"


def test_an_auditor_following_the_header_rehashes_non_ascii_entries(
    engine: Engine, journal: Journal, tmp_path: Path
) -> None:
    """The header's description of the hash is exact: UTF-8, non-ASCII not escaped."""
    import hashlib

    with engine.begin() as conn:
        journal.append(conn, [event(1, actor="médecin.généraliste@hôpital.example",
                                    object_ids=(("recipient", "zoé@santé.example"),))])
    out = tmp_path / "export.jsonl"
    with engine.connect() as conn:
        export(conn, out)
    header, entry = (json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()[:2])
    assert "UTF-8" in header["hash"] and "ASCII JSON" not in header["hash"]
    object_ids = json.dumps(entry["object_ids"], ensure_ascii=False, separators=(",", ":"))
    fields = [entry[k] for k in ("seq", "at", "action", "actor", "outcome", "reason",
                                 "message_id", "document_id", "queue_id", "patient_ins",
                                 "client_ip", "protocol")] + [object_ids]
    canonical = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert hashlib.sha256(bytes.fromhex(entry["prev"]) + canonical).hexdigest() == entry["hash"]
    ascii_form = json.dumps(fields, separators=(",", ":")).encode("ascii")
    assert hashlib.sha256(bytes.fromhex(entry["prev"]) + ascii_form).hexdigest() != entry["hash"]


def test_a_long_gnupg_home_gets_a_short_link_and_dead_links_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = tmp_path / "t"
    links.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(links))
    gone = tmp_path / "gone"
    (links / "caducee-gpg-0123456789abcdef").symlink_to(gone)  # its data directory was removed
    (links / "caducee-gpg-unrelated").mkdir()
    home = tmp_path / ("h" * 90) / "gnupg"
    home.mkdir(parents=True)

    link = export_signing.short_home(home)
    assert link.parent == links and link.is_symlink() and link.resolve() == home.resolve()
    assert sorted(p.name for p in links.iterdir()) == sorted([link.name, "caducee-gpg-unrelated"])
    assert export_signing.short_home(home) == link  # stable
    short = Path("/tmp/g")
    assert export_signing.short_home(short) == short.resolve()
