"""IDLE (RFC 2177): deliveries, APPENDs and changes by others reach idling clients at once,
in-process through the notifier and across nodes through PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import time

import pytest

from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import ImapHarness, Wire

PASSWORD = "secret-password"


def _idle(h: ImapHarness) -> Wire:
    w = Wire.connect(h.tls_port, tls=h.client_ssl())
    w.line()
    assert w.cmd(b"L", b"LOGIN claire@chu.test " + PASSWORD.encode()).startswith(b"L OK")
    w.cmd(b"S", b"SELECT INBOX")
    w.send(b"I IDLE\r\n")
    assert w.line() == b"+ idling\r\n"
    return w


def _timed_line(w: Wire) -> tuple[bytes, float]:
    line = w.line()
    return line, time.monotonic()


def test_delivery_reaches_an_idling_client_within_100ms(imap_server: ImapHarness) -> None:
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    idlers = [_idle(imap_server) for _ in range(3)]
    for n in range(1, 4):
        imap_server.deliver(acc, [corpus.SIMPLE])
        # from the commit, as a client sees it (SMTP's 250, APPEND's OK): the delivery's
        # own fsync is not the notifier's latency
        committed = time.monotonic()
        for w in idlers:
            line, when = _timed_line(w)
            assert line == b"* %d EXISTS\r\n" % n
            assert when - committed < 0.1, f"IDLE woke {when - committed:.3f}s after the commit"
            assert w.line().endswith(b"RECENT\r\n")
    for w in idlers:
        w.send(b"DONE\r\n")
        assert w.until(b"I") == b"I OK IDLE terminated\r\n"
        w.close()


def test_changes_by_another_connection_during_idle(imap_server: ImapHarness) -> None:
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF])
    idler = _idle(imap_server)
    client = imap_server.login("claire@chu.test", PASSWORD)
    for n in (3, 4, 5):
        arrived = idler.lines_in_background(2)
        typ, _ = client.append("INBOX", None, None, corpus.DIGEST)
        ok_at = time.monotonic()  # imaplib returns as soon as it has read the tagged OK
        assert typ == "OK"
        (exists, exists_at), (recent, _) = arrived()
        assert (exists, recent) == (b"* %d EXISTS\r\n" % n, b"* %d RECENT\r\n" % n)
        assert exists_at - ok_at < 0.1, f"IDLE woke {exists_at - ok_at:.3f}s after APPEND's OK"
    client.select("INBOX")
    client.store("1", "+FLAGS", "(\\Flagged)")
    assert idler.line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"
    client.store("2", "+FLAGS", "(\\Deleted)")
    assert idler.line() == b"* 2 FETCH (UID 2 FLAGS (\\Deleted \\Recent))\r\n"
    client.expunge()
    assert idler.line() == b"* 2 EXPUNGE\r\n"
    idler.send(b"DONE\r\n")
    assert idler.until(b"I") == b"I OK IDLE terminated\r\n"
    assert idler.cmd(b"F", b"FETCH 1:* UID") == (
        b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 3)\r\n* 3 FETCH (UID 4)\r\n"
        b"* 4 FETCH (UID 5)\r\nF OK FETCH completed\r\n"
    )
    idler.send(b"J IDLE\r\n")
    assert idler.line() == b"+ idling\r\n"
    idler.send(b"nope\r\n")
    assert idler.until(b"J") == b"J BAD expected DONE to end IDLE\r\n"
    client.logout()
    idler.close()


def test_idle_across_nodes_through_postgresql(imap_server: ImapHarness, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    other = ImapHarness(imap_server.db_url, ring=imap_server.keystore.ring).start()
    try:
        idler = _idle(other)  # node B
        imap_server.deliver(acc, [corpus.SIMPLE])  # node A's delivery path
        committed = time.monotonic()
        line, when = _timed_line(idler)
        assert line == b"* 1 EXISTS\r\n"
        # (a PostgreSQL round trip more than in-process: allow for a loaded CI machine)
        assert when - committed < 0.5, f"cross-node IDLE woke {when - committed:.3f}s late"
        assert other.notifier.remote_events >= 1
        assert idler.line() == b"* 1 RECENT\r\n"
        client = imap_server.login("claire@chu.test", PASSWORD)  # APPEND on node A
        client.append("INBOX", None, None, corpus.SIMPLE)
        assert idler.line() == b"* 2 EXISTS\r\n"
        client.logout()
        idler.send(b"DONE\r\n")
        idler.until(b"I")
        idler.close()
    finally:
        other.stop()
