"""Commands on a selected mailbox over real sockets: FETCH, STORE, SEARCH, COPY, MOVE,
EXPUNGE, CLOSE, UNSELECT, CONDSTORE, ESEARCH/SEARCHRES (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from mailstore.accounts import Account, get_by_address
from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import ImapHarness, Wire

PASSWORD = "secret-password"


def _session(h: ImapHarness, select: bytes = b"SELECT INBOX") -> Wire:
    w = Wire.connect(h.tls_port, tls=h.client_ssl())
    w.line()
    assert w.cmd(b"L", b"LOGIN claire@chu.test " + PASSWORD.encode()).startswith(b"L OK")
    assert w.cmd(b"S", select).endswith(b"completed\r\n")
    return w


def _setup(h: ImapHarness) -> None:
    acc = h.create_account("claire@chu.test", PASSWORD)
    when = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    h.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF, corpus.FORWARDED], internal_date=when)
    h.deliver(acc, [corpus.EIGHT_BIT_HEADERS], flags=["\\Seen"],
              internal_date=datetime(2024, 3, 9, 12, 0, tzinfo=UTC))


def test_fetch_items_and_implicit_seen(imap_server: ImapHarness) -> None:
    _setup(imap_server)
    w = _session(imap_server)
    assert w.cmd(b"a1", b"FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)") == (
        b'* 1 FETCH (FLAGS (\\Recent) INTERNALDATE "05-Mar-2024 09:00:00 +0000" '
        b"RFC822.SIZE %d)\r\na1 OK FETCH completed\r\n" % len(corpus.SIMPLE)
    )
    header = corpus.SIMPLE[: corpus.SIMPLE.index(b"\r\n\r\n") + 4]
    assert w.cmd(b"a2", b"FETCH 1 (BODY.PEEK[HEADER] FLAGS)") == (
        b"* 1 FETCH (BODY[HEADER] {%d}\r\n" % len(header) + header
        + b" FLAGS (\\Recent))\r\na2 OK FETCH completed\r\n"
    )
    assert w.cmd(b"a3", b"FETCH 1 BODY[TEXT]<0.7>") == (
        b"* 1 FETCH (BODY[TEXT]<0> {7}\r\nBonjour FLAGS (\\Seen \\Recent))\r\n"
        b"a3 OK FETCH completed\r\n"
    )
    start = corpus.WITH_PDF.index(b"Content-Type: application/pdf")
    mime = corpus.WITH_PDF[start : corpus.WITH_PDF.index(b"\r\n\r\n", start) + 4]
    assert w.cmd(b"a4", b"UID FETCH 2 (BINARY.SIZE[2] BINARY.PEEK[2] BODY.PEEK[2.MIME])") == (
        b"* 2 FETCH (UID 2 BINARY.SIZE[2] %d BINARY[2] {%d}\r\n" % (len(corpus.PDF),
                                                                    len(corpus.PDF))
        + corpus.PDF + b" BODY[2.MIME] {%d}\r\n" % len(mime) + mime
        + b")\r\na4 OK FETCH completed\r\n"
    )
    fwd = w.cmd(b"a5", b"FETCH 3 (BODY.PEEK[2.HEADER.FIELDS (subject)] BODYSTRUCTURE ENVELOPE)")
    assert b"BODY[2.HEADER.FIELDS (subject)] {57}\r\nSubject: =?UTF-8?B?" in fwd
    assert b'BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii")' in fwd
    assert b'ENVELOPE ("Fri, 8 Mar 2024 09:00:00 +0100" "Fwd: Compte rendu"' in fwd
    assert w.cmd(b"a6", b"FETCH 4 (RFC822.HEADER)").startswith(b"* 4 FETCH (RFC822.HEADER {")
    rfc822 = w.cmd(b"a7", b"FETCH 2 RFC822")
    assert rfc822.startswith(b"* 2 FETCH (RFC822 {%d}\r\n" % len(corpus.WITH_PDF) + corpus.WITH_PDF)
    assert b"FLAGS (\\Seen \\Recent)" in rfc822
    assert w.cmd(b"a8", b"FETCH 1:* FAST").count(b" FETCH (FLAGS") == 4
    assert w.cmd(b"a9", b"UID FETCH 10:* UID") == b"* 4 FETCH (UID 4)\r\na9 OK FETCH completed\r\n"
    assert w.cmd(b"b1", b"FETCH 5 UID").startswith(b"b1 BAD")
    assert w.cmd(b"b2", b"UID FETCH 99 UID") == b"b2 OK FETCH completed\r\n"
    w.close()
    w = _session(imap_server, b"EXAMINE INBOX")
    assert b"FLAGS" not in w.cmd(b"c1", b"FETCH 3 BODY[TEXT]").split(b"}\r\n")[0]
    w.close()


def test_store_flags_and_condstore(imap_server: ImapHarness) -> None:
    _setup(imap_server)
    w = _session(imap_server, b"SELECT INBOX (CONDSTORE)")
    assert w.cmd(b"a1", b"STORE 1:2 +FLAGS (\\Flagged $Urgent)") == (
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Urgent)\r\n"
        b"* 1 FETCH (FLAGS ($Urgent \\Flagged \\Recent) MODSEQ (6))\r\n"
        b"* 2 FETCH (FLAGS ($Urgent \\Flagged \\Recent) MODSEQ (6))\r\n"
        b"a1 OK STORE completed\r\n"
    )
    assert w.cmd(b"a2", b"UID STORE 1 -FLAGS.SILENT ($Urgent)") == (
        b"* 1 FETCH (UID 1 MODSEQ (7))\r\na2 OK STORE completed\r\n"
    )
    assert w.cmd(b"a3", b"STORE 1:2 (UNCHANGEDSINCE 6) FLAGS (\\Answered)") == (
        b"* 2 FETCH (FLAGS (\\Answered \\Recent) MODSEQ (8))\r\n"
        b"a3 OK [MODIFIED 1] Conditional STORE failed\r\n"
    )
    assert w.cmd(b"a4", b"FETCH 1:* (FLAGS) (CHANGEDSINCE 7)") == (
        b"* 2 FETCH (FLAGS (\\Answered \\Recent) MODSEQ (8))\r\na4 OK FETCH completed\r\n"
    )
    assert w.cmd(b"a5", b"STORE 4 FLAGS \\Seen \\Draft").startswith(b"* 4 FETCH (FLAGS (")
    w.close()
    w = _session(imap_server, b"EXAMINE INBOX")
    assert w.cmd(b"b1", b"STORE 1 +FLAGS (\\Seen)").startswith(b"b1 NO [READ-ONLY]")
    w.close()


def test_search_keys_esearch_and_saved_results(imap_server: ImapHarness) -> None:
    _setup(imap_server)
    w = _session(imap_server)
    cases = {
        b"SEARCH ALL": b"* SEARCH 1 2 3 4",
        b"SEARCH SEEN": b"* SEARCH 4",
        b"SEARCH UNSEEN NEW": b"* SEARCH 1 2 3",
        b'SEARCH FROM "martin"': b"* SEARCH 1 2",
        b"SEARCH CHARSET UTF-8 SUBJECT {9+}\r\nr\xc3\xa9sultat": b"* SEARCH 2",
        b"SEARCH CHARSET UTF-8 FROM \"\xc3\xa9lodie\"": b"* SEARCH 4",
        b"SEARCH HEADER X-MSS-MES FIN": b"* SEARCH 4",
        b'SEARCH HEADER In-Reply-To ""': b"* SEARCH 2",
        b"SEARCH BODY compte": b"* SEARCH 1",
        b"SEARCH CHARSET UTF-8 TEXT \"R\xc3\x89SULTATS CI-JOINTS\"": b"* SEARCH 2 3",
        b"SEARCH TEXT Fwd": b"* SEARCH 3",
        b"SEARCH SENTBEFORE 6-Mar-2024": b"* SEARCH 1",
        b"SEARCH SENTON 6-Mar-2024": b"* SEARCH 2",
        b"SEARCH SINCE 6-Mar-2024": b"* SEARCH 4",
        b"SEARCH ON 5-Mar-2024 NOT 2:3": b"* SEARCH 1",
        b"SEARCH OR LARGER 900 SEEN": b"* SEARCH 2 3 4",
        b"SEARCH SMALLER 400": b"* SEARCH 1 4",
        b"SEARCH UID 2:*": b"* SEARCH 2 3 4",
        b"SEARCH NOT ALL": b"* SEARCH",
        b"UID SEARCH 2,4": b"* SEARCH 2 4",
    }
    for i, (command, expected) in enumerate(cases.items()):
        tag = b"s%d" % i
        assert w.cmd(tag, command) == expected + b"\r\n" + tag + b" OK SEARCH completed\r\n", command
    assert w.cmd(b"e1", b"SEARCH RETURN (MIN MAX COUNT) UNSEEN") == (
        b'* ESEARCH (TAG "e1") MIN 1 MAX 3 COUNT 3\r\ne1 OK SEARCH completed\r\n'
    )
    assert w.cmd(b"e2", b"UID SEARCH RETURN () ALL") == (
        b'* ESEARCH (TAG "e2") UID ALL 1:4\r\ne2 OK SEARCH completed\r\n'
    )
    assert w.cmd(b"e3", b"SEARCH RETURN (SAVE) FROM martin") == b"e3 OK SEARCH completed\r\n"
    assert w.cmd(b"e4", b"FETCH $ UID") == (
        b"* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\ne4 OK FETCH completed\r\n"
    )
    assert w.cmd(b"e5", b"SEARCH MODSEQ 5") == b"* SEARCH 4 (MODSEQ 5)\r\ne5 OK SEARCH completed\r\n"
    assert w.cmd(b"e6", b"ENABLE IMAP4rev2").startswith(b"* ENABLED")
    assert w.cmd(b"e7", b"SEARCH SEEN") == (
        b'* ESEARCH (TAG "e7") ALL 4\r\ne7 OK SEARCH completed\r\n'
    )
    w.close()


def test_copy_move_expunge_close_unselect(imap_server: ImapHarness) -> None:
    _setup(imap_server)
    w = _session(imap_server)
    assert w.cmd(b"a1", b"COPY 1:2 Archive") == (
        b"a1 OK [COPYUID %d 1:2 1:2] COPY completed\r\n" % _uidvalidity(w, b"Archive")
    )
    assert w.cmd(b"a2", b"COPY 1 Nope") == b"a2 NO [TRYCREATE] Mailbox Nope does not exist\r\n"
    reply = w.cmd(b"a3", b"UID MOVE 3 Trash")
    assert reply.startswith(b"* OK [COPYUID ")
    assert reply.endswith(b" 3 1] Moved\r\n* 3 EXPUNGE\r\na3 OK MOVE completed\r\n")
    assert w.cmd(b"a4", b"STORE 1:2 +FLAGS.SILENT (\\Deleted)") == b"a4 OK STORE completed\r\n"
    assert w.cmd(b"a5", b"UID EXPUNGE 2") == b"* 2 EXPUNGE\r\na5 OK EXPUNGE completed\r\n"
    assert w.cmd(b"a6", b"EXPUNGE") == b"* 1 EXPUNGE\r\na6 OK EXPUNGE completed\r\n"
    assert w.cmd(b"a7", b"FETCH 1:* UID") == b"* 1 FETCH (UID 4)\r\na7 OK FETCH completed\r\n"
    w.cmd(b"a8", b"SELECT Archive")
    assert w.cmd(b"a9", b"FETCH 1:* (UID BODY.PEEK[])").count(b"FETCH (UID") == 2
    w.cmd(b"b1", b"STORE 1 +FLAGS (\\Deleted)")
    assert w.cmd(b"b2", b"UNSELECT") == b"b2 OK UNSELECT completed\r\n"
    assert w.cmd(b"b3", b"STATUS Archive (MESSAGES)").startswith(b"* STATUS Archive (MESSAGES 2)")
    w.cmd(b"b4", b"SELECT Archive")
    assert w.cmd(b"b5", b"CLOSE") == b"b5 OK CLOSE completed\r\n"
    assert w.cmd(b"b6", b"STATUS Archive (MESSAGES)").startswith(b"* STATUS Archive (MESSAGES 1)")
    assert w.cmd(b"b7", b"EXPUNGE").startswith(b"b7 BAD")
    w.close()


def _uidvalidity(w: Wire, name: bytes) -> int:
    reply = w.cmd(b"uv", b"STATUS " + name + b" (UIDVALIDITY)")
    return int(reply.split(b"UIDVALIDITY ")[1].split(b")")[0])


def test_two_sessions_see_each_others_changes(imap_server: ImapHarness) -> None:
    _setup(imap_server)
    a = _session(imap_server)
    b = _session(imap_server)
    a.cmd(b"a1", b"STORE 1 +FLAGS.SILENT (\\Flagged)")
    assert b.cmd(b"b1", b"NOOP") == (
        b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\nb1 OK NOOP completed\r\n"
    )
    a.cmd(b"a2", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    a.cmd(b"a3", b"EXPUNGE")
    # no EXPUNGE during FETCH (RFC 3501 §7.4.1): the message just vanishes from the answer
    fetch = b.cmd(b"b2", b"FETCH 1:* UID")
    assert b"EXPUNGE" not in fetch and b"(UID 2)" not in fetch
    assert b.cmd(b"b3", b"CHECK") == b"* 2 EXPUNGE\r\nb3 OK CHECK completed\r\n"
    imap_server.deliver(imap_server_account(imap_server), [corpus.DIGEST])
    assert b.cmd(b"b4", b"NOOP") == b"* 4 EXISTS\r\n* 1 RECENT\r\nb4 OK NOOP completed\r\n"
    a.close()
    b.close()


def imap_server_account(h: ImapHarness) -> Account:
    found = h.db.read_sync(lambda conn: get_by_address(conn, "claire@chu.test"))
    assert found is not None
    return found
