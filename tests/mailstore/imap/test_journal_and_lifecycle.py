"""Audit journal entries (logins, patients' messages read), autologout and shutdown BYE."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from audit.entries import query
from audit.events import Action
from audit.journal import Journal
from mailstore.imap.session import ImapSettings
from tests.mailstore.imap.harness import ImapHarness, Wire

PASSWORD = "secret-password"
INS = "279035121518989"

FROM_PATIENT = (
    f"From: {INS}@patient.test\r\nTo: claire@chu.test\r\nSubject: Question\r\n"
    "Message-ID: <q1@patient.test>\r\n\r\nBonjour docteur\r\n"
).encode()
FROM_COLLEAGUE = b"From: paul@chu.test\r\nTo: claire@chu.test\r\nSubject: Hello\r\n\r\nHi\r\n"


@pytest.fixture
def journaled(imap_db_url: str) -> Iterator[ImapHarness]:
    harness = ImapHarness(
        imap_db_url, journal=Journal(None),
        settings=ImapSettings(patient_domain="patient.test", preauth_timeout=0.5,
                              autologout=1.0),
    ).start()
    try:
        yield harness
    finally:
        harness.stop()


def test_logins_and_patient_reads_are_journaled(journaled: ImapHarness) -> None:
    acc = journaled.create_account("claire@chu.test", PASSWORD)
    journaled.deliver(acc, [FROM_PATIENT, FROM_COLLEAGUE])
    w = Wire.connect(journaled.tls_port, tls=journaled.client_ssl())
    w.line()
    w.cmd(b"a1", b"LOGIN claire@chu.test wrong-password")
    w.cmd(b"a2", b"LOGIN claire@chu.test " + PASSWORD.encode())
    w.cmd(b"a3", b"SELECT INBOX")
    w.cmd(b"a4", b"FETCH 1:2 (ENVELOPE BODY.PEEK[HEADER])")  # headers only: not a read
    w.cmd(b"a5", b"FETCH 1:2 BODY.PEEK[TEXT]")
    w.close()
    entries = journaled.db.read_sync(lambda conn: query(conn))
    events = [e.event for e in entries]
    failed = [e for e in events if e.action == Action.LOGIN_FAILED]
    ok = [e for e in events if e.action == Action.LOGIN_SUCCEEDED]
    assert len(failed) == 1 and failed[0].actor == "claire@chu.test"
    assert failed[0].protocol == "imap" and failed[0].client_ip == "127.0.0.1"
    assert len(ok) == 1 and ok[0].outcome == "ok"
    reads = [e for e in events if e.action == Action.PATIENT_DATA_READ]
    assert len(reads) == 1
    assert reads[0].patient_ins == INS and reads[0].actor == "claire@chu.test"
    assert reads[0].message_id == "<q1@patient.test>"
    assert all(PASSWORD not in repr(e) and "Bonjour" not in repr(e) for e in events)


def test_autologout_before_and_after_login(journaled: ImapHarness) -> None:
    journaled.create_account("claire@chu.test", PASSWORD)
    silent = Wire.connect(journaled.tls_port, tls=journaled.client_ssl())
    silent.line()
    assert silent.closed()
    assert b"* BYE Autologout" in silent.buf
    w = Wire.connect(journaled.tls_port, tls=journaled.client_ssl())
    w.line()
    w.cmd(b"a1", b"LOGIN claire@chu.test " + PASSWORD.encode())
    w.send(b"a2 IDLE\r\n")
    assert w.line() == b"+ idling\r\n"
    assert w.closed()
    assert b"* BYE Autologout" in w.buf
    silent.close()
    w.close()


def test_shutdown_says_bye(imap_db_url: str) -> None:
    harness = ImapHarness(imap_db_url).start()
    harness.create_account("claire@chu.test", PASSWORD)
    w = Wire.connect(harness.tls_port, tls=harness.client_ssl())
    w.line()
    w.cmd(b"a1", b"LOGIN claire@chu.test " + PASSWORD.encode())
    plain = Wire.connect(harness.port)
    plain.line()
    harness.stop()
    assert w.closed() and b"* BYE Server shutting down" in w.buf
    assert plain.closed() and b"* BYE Server shutting down" in plain.buf
    w.close()
    plain.close()
