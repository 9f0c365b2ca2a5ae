"""Mailbox commands over real sockets: CREATE/DELETE/RENAME/SUBSCRIBE/LIST/LSUB/STATUS/
SELECT/EXAMINE/APPEND (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from typing import Any

from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import ImapHarness, Wire

PASSWORD = "secret-password"


def _login(h: ImapHarness) -> Wire:
    return h.wire_login("claire@chu.test", PASSWORD)


def test_list_create_rename_delete_subscribe(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = _login(imap_server)
    assert w.cmd(b"a1", b'LIST "" ""') == b'* LIST (\\Noselect) "/" ""\r\na1 OK LIST completed\r\n'
    assert w.cmd(b"a2", b'LIST "" *') == (
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
        b'* LIST (\\HasNoChildren \\Archive) "/" Archive\r\n'
        b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n'
        b'* LIST (\\HasNoChildren \\Junk) "/" Junk\r\n'
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n'
        b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n'
        b"a2 OK LIST completed\r\n"
    )
    assert w.cmd(b"a3", b"CREATE Patients/Dupont/2024") == b"a3 OK CREATE completed\r\n"
    assert w.cmd(b"a4", b"CREATE Patients") == (
        b"a4 NO [ALREADYEXISTS] mailbox Patients already exists\r\n"
    )
    assert w.cmd(b"a5", b"CREATE Re&AOc-us") == b"a5 OK CREATE completed\r\n"
    assert w.cmd(b"a6", b'LIST "" %') .count(b"* LIST") == 8
    assert w.cmd(b"a7", b'LIST "Patients/" %') == (
        b'* LIST (\\HasChildren) "/" Patients/Dupont\r\na7 OK LIST completed\r\n'
    )
    assert w.cmd(b"a8", b'LIST "" "re*"') == b"a8 OK LIST completed\r\n"  # case-sensitive
    assert b'"/" Re&AOc-us' in w.cmd(b"a9", b'LIST "" "Re*"')
    assert w.cmd(b"b2", b"DELETE INBOX") == b"b2 NO [CANNOT] INBOX cannot be deleted\r\n"
    assert w.cmd(b"b3", b"DELETE Nope") == b"b3 NO [NONEXISTENT] no mailbox Nope\r\n"
    assert w.cmd(b"b4", b"RENAME Patients Dossiers") == b"b4 OK RENAME completed\r\n"
    assert w.cmd(b"b5", b'LIST "" Dossiers/*') == (
        b'* LIST (\\HasChildren) "/" Dossiers/Dupont\r\n'
        b'* LIST (\\HasNoChildren) "/" Dossiers/Dupont/2024\r\n'
        b"b5 OK LIST completed\r\n"
    )
    assert w.cmd(b"b6", b"RENAME Dossiers Dossiers/x").startswith(b"b6 NO [CANNOT]")
    assert w.cmd(b"b7", b"RENAME Dossiers Sent").startswith(b"b7 NO [ALREADYEXISTS]")
    assert w.cmd(b"c1", b"UNSUBSCRIBE Junk") == b"c1 OK UNSUBSCRIBE completed\r\n"
    lsub = w.cmd(b"c2", b'LSUB "" *')
    assert b"Junk" not in lsub and b'* LSUB () "/" Sent\r\n' in lsub
    ext = w.cmd(b"c3", b'LIST (SUBSCRIBED) "" (INBOX Junk Trash) RETURN (CHILDREN)')
    assert ext == (
        b'* LIST (\\HasNoChildren \\Subscribed) "/" INBOX\r\n'
        b'* LIST (\\HasNoChildren \\Trash \\Subscribed) "/" Trash\r\n'
        b"c3 OK LIST completed\r\n"
    )
    special = w.cmd(b"c4", b'LIST (SPECIAL-USE) "" * RETURN (SPECIAL-USE)')
    assert special.count(b"* LIST") == 5 and b"INBOX" not in special
    assert w.cmd(b"c5", b"SUBSCRIBE Nope").startswith(b"c5 NO [NONEXISTENT]")
    assert w.cmd(b"c6", b"CREATE Factures (USE (\\Archive))") == b"c6 OK CREATE completed\r\n"
    assert w.cmd(b"c7", b"CREATE Bad (USE (\\Bogus))").startswith(b"c7 NO [USEATTR]")
    assert b'(\\HasNoChildren \\Archive) "/" Factures' in w.cmd(b"c8", b'LIST "" Factures')
    assert w.cmd(b"c9", b'CREATE "a*b"').startswith(b"c9 NO [CANNOT]")
    w.close()


def test_utf8_mailbox_names_after_enable_imap4rev2(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = _login(imap_server)
    assert w.cmd(b"a1", b"ENABLE IMAP4rev2") == b"* ENABLED IMAP4rev2\r\na1 OK ENABLE completed\r\n"
    assert w.cmd(b"a2", 'CREATE "Reçus/Été"'.encode()) == b"a2 OK CREATE completed\r\n"
    assert 'LIST (\\HasNoChildren) "/" "Reçus/Été"'.encode() in w.cmd(b"a3", b'LIST "" Re*/*')
    w.close()
    w = _login(imap_server)
    assert b'"/" Re&AOc-us/&AMk-t&AOk-' in w.cmd(b"a1", b'LIST "" Re*/*')
    w.close()


def test_imap4rev2_select_sends_list_and_never_recent(imap_server: ImapHarness) -> None:
    """RFC 9051 §6.3.2-3: SELECT/EXAMINE answer a LIST line; no \\Recent (Appendix E)."""
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF])
    w = _login(imap_server)
    assert w.cmd(b"a1", b"ENABLE IMAP4rev2").startswith(b"* ENABLED IMAP4rev2\r\n")
    reply = w.cmd(b"a2", b"EXAMINE INBOX")
    assert b"* 2 EXISTS\r\n" in reply and b"RECENT" not in reply and b"UNSEEN" not in reply
    assert reply.endswith(b'* LIST (\\HasNoChildren) "/" INBOX\r\na2 OK [READ-ONLY] EXAMINE completed\r\n')
    assert w.cmd(b"a3", b"FETCH 1:* FLAGS") == (
        b"* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ())\r\na3 OK FETCH completed\r\n"
    )
    reply = w.cmd(b"a4", b"SELECT INBOX")
    assert b"RECENT" not in reply
    assert reply.endswith(b'* LIST (\\HasNoChildren) "/" INBOX\r\na4 OK [READ-WRITE] SELECT completed\r\n')
    imap_server.deliver(acc, [corpus.DIGEST])
    assert w.cmd(b"a5", b"NOOP") == b"* 3 EXISTS\r\na5 OK NOOP completed\r\n"
    assert w.cmd(b"a6", b"FETCH 3 FLAGS") == b"* 3 FETCH (FLAGS ())\r\na6 OK FETCH completed\r\n"
    assert w.cmd(b"a7", b"SEARCH RECENT") == b"* ESEARCH (TAG \"a7\")\r\na7 OK SEARCH completed\r\n"
    assert w.cmd(b"a8", 'CREATE "Reçus/Été"'.encode()) == b"a8 OK CREATE completed\r\n"
    assert w.cmd(b"a9", 'SELECT "Reçus"'.encode()).endswith(
        '* LIST (\\HasChildren) "/" "Reçus"\r\na9 OK [READ-WRITE] SELECT completed\r\n'.encode()
    )
    assert w.cmd(b"b1", b"EXAMINE Sent").endswith(
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\nb1 OK [READ-ONLY] EXAMINE completed\r\n'
    )
    w.close()
    # The IMAP4rev2 session took no \\Recent: an IMAP4rev1 session still gets all three,
    # sees no LIST line, and loses \\Recent from view once it enables IMAP4rev2.
    w = _login(imap_server)
    reply = w.cmd(b"c1", b"SELECT INBOX")
    assert b"* 3 RECENT\r\n" in reply and b"* LIST" not in reply
    assert b"\\Recent" in w.cmd(b"c2", b"FETCH 1 FLAGS")
    assert w.cmd(b"c3", b"ENABLE IMAP4rev2").startswith(b"* ENABLED IMAP4rev2\r\n")
    assert b"\\Recent" not in w.cmd(b"c4", b"FETCH 1:* FLAGS")
    w.close()


def test_status_and_list_status(imap_server: ImapHarness) -> None:
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF])
    imap_server.deliver(acc, [corpus.DIGEST], flags=["\\Seen", "\\Deleted"])
    size = len(corpus.SIMPLE) + len(corpus.WITH_PDF) + len(corpus.DIGEST)
    w = _login(imap_server)
    reply = w.cmd(b"a1", b"STATUS INBOX (MESSAGES RECENT UNSEEN UIDNEXT SIZE DELETED HIGHESTMODSEQ)")
    assert reply == (
        b"* STATUS INBOX (MESSAGES 3 RECENT 3 UNSEEN 2 UIDNEXT 4 SIZE %d DELETED 1 "
        b"HIGHESTMODSEQ 4)\r\na1 OK STATUS completed\r\n" % size
    )
    assert w.cmd(b"a2", b"STATUS Nope (MESSAGES)").startswith(b"a2 NO [NONEXISTENT]")
    reply = w.cmd(b"a3", b'LIST "" (INBOX Sent) RETURN (STATUS (MESSAGES UIDVALIDITY))')
    lines = reply.split(b"\r\n")
    assert lines[0] == b'* LIST (\\HasNoChildren) "/" INBOX'
    assert lines[1].startswith(b"* STATUS INBOX (MESSAGES 3 UIDVALIDITY ")
    assert lines[2] == b'* LIST (\\HasNoChildren \\Sent) "/" Sent'
    assert lines[3].startswith(b"* STATUS Sent (MESSAGES 0 ")
    w.close()


def test_select_examine_and_recent(imap_server: ImapHarness) -> None:
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [corpus.SIMPLE], flags=["\\Seen"])
    imap_server.deliver(acc, [corpus.WITH_PDF, corpus.ALTERNATIVE])
    w = _login(imap_server)
    reply = w.cmd(b"a1", b"EXAMINE INBOX")
    assert b"* 3 EXISTS\r\n* 3 RECENT\r\n* OK [UNSEEN 2] First unseen\r\n" in reply
    assert b"* OK [PERMANENTFLAGS ()] Flags permitted\r\n" in reply
    assert reply.endswith(b"a1 OK [READ-ONLY] EXAMINE completed\r\n")
    reply = w.cmd(b"a2", b"SELECT INBOX (CONDSTORE)")
    assert reply.startswith(b"* OK [CLOSED] Previous mailbox closed\r\n")
    assert b"* 3 RECENT" in reply and b"* OK [HIGHESTMODSEQ 4] Highest" in reply
    assert b"\\Deleted \\Seen \\Draft \\*)] Flags permitted" in reply
    assert reply.endswith(b"a2 OK [READ-WRITE] SELECT completed\r\n")
    other = _login(imap_server)
    assert b"* 0 RECENT" in other.cmd(b"b1", b"SELECT INBOX")  # the first session has them
    assert w.cmd(b"a3", b"SELECT Nope") == (
        b"* OK [CLOSED] Previous mailbox closed\r\n"
        b"a3 NO [NONEXISTENT] Mailbox Nope does not exist\r\n"
    )
    assert w.cmd(b"a4", b"FETCH 1 FLAGS").startswith(b"a4 BAD")  # no mailbox selected now
    w.close()
    other.close()


def test_append_round_trip_is_byte_exact(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    client = imap_server.login("claire@chu.test", PASSWORD)
    uids = []
    for raw in corpus.ALL.values():
        typ, data = client.append("Drafts", "(\\Draft $Brouillon)",
                                  '"07-Mar-2024 17:45:10 +0200"', raw)
        assert typ == "OK"
        code = data[0].split(b"]")[0].split()
        assert code[0] == b"[APPENDUID"
        uids.append(int(code[2]))
    assert uids == list(range(1, len(corpus.ALL) + 1))
    client.select("Drafts")
    for uid, raw in zip(uids, corpus.ALL.values(), strict=True):
        typ, data = client.uid("FETCH", str(uid), "(RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[])")
        sent = re.sub(rb"\r?\n", b"\r\n", raw)  # imaplib sends CRLF
        answer: Any = data[0]
        head, content = answer
        assert content == sent
        assert b"RFC822.SIZE %d" % len(sent) in head
        assert b'INTERNALDATE "07-Mar-2024 15:45:10 +0000"' in head
        assert b"FLAGS ($Brouillon \\Draft \\Recent)" in head
    typ, data = client.append("Nope", None, None, corpus.SIMPLE)
    assert typ == "NO" and data[0].startswith(b"[TRYCREATE]")
    client.logout()
    w = _login(imap_server)  # bare LF, NUL-free 8-bit: stored and returned as sent
    raw = corpus.BARE_LF + "é\n".encode()
    w.send(b"a1 APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
    assert w.until(b"a1").startswith(b"a1 OK [APPENDUID ")
    w.cmd(b"a2", b"SELECT INBOX")
    assert w.cmd(b"a3", b"FETCH 1 BODY.PEEK[]") == (
        b"* 1 FETCH (BODY[] {%d}\r\n" % len(raw) + raw + b")\r\na3 OK FETCH completed\r\n"
    )
    w.close()


def test_append_refuses_what_policy_refuses(imap_server: ImapHarness) -> None:
    imap_server.create_account("claire@chu.test", PASSWORD)
    exe = (
        b"From: a@chu.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"hi\r\n--b\r\nContent-Type: application/octet-stream; name=run.exe\r\n"
        b"Content-Disposition: attachment; filename=run.exe\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"
        b"--b--\r\n"
    )
    w = _login(imap_server)
    w.send(b"a1 APPEND Drafts {%d+}\r\n" % len(exe) + exe + b"\r\n")
    assert w.until(b"a1").startswith(b"a1 NO [CANNOT] Attachment type not accepted")
    w.send(b"a2 APPEND Drafts {0+}\r\n\r\n")
    assert w.until(b"a2").startswith(b"a2 NO")
    w.close()


def _uidvalidity(w: Wire, tag: bytes, name: bytes) -> int:
    reply = w.cmd(tag, b"STATUS " + name + b" (UIDVALIDITY)")
    m = re.search(rb"UIDVALIDITY (\d+)\)", reply)
    assert m, reply
    return int(m.group(1))


def test_delete_with_inferiors_leaves_a_noselect_name(imap_server: ImapHarness) -> None:
    """RFC 3501 §6.3.4: messages go, the name stays \\Noselect while it has inferiors, and
    CREATE makes it a mailbox again with a greater UIDVALIDITY (§2.3.1.1)."""
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    w = _login(imap_server)
    assert w.cmd(b"a1", b"CREATE Patients/Dupont") == b"a1 OK CREATE completed\r\n"
    imap_server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF], mailbox="Patients")
    imap_server.deliver(acc, [corpus.DIGEST], mailbox="Patients/Dupont")
    old = _uidvalidity(w, b"a2", b"Patients")
    assert w.cmd(b"a3", b"DELETE Patients") == b"a3 OK DELETE completed\r\n"
    assert w.cmd(b"a4", b'LIST "" Patients*') == (
        b'* LIST (\\Noselect \\HasChildren) "/" Patients\r\n'
        b'* LIST (\\HasNoChildren) "/" Patients/Dupont\r\n'
        b"a4 OK LIST completed\r\n"
    )
    assert w.cmd(b"a5", b"SELECT Patients").endswith(
        b"a5 NO [NONEXISTENT] Mailbox Patients does not exist\r\n"
    )
    assert w.cmd(b"a6", b"APPEND Patients {1+}\r\nx").startswith(b"a6 NO [TRYCREATE]")
    assert w.cmd(b"a7", b"DELETE Patients") == (
        b"a7 NO [INUSE] Patients is \\Noselect and has sub-mailboxes: delete them first\r\n"
    )
    assert w.cmd(b"a8", b"STATUS Patients/Dupont (MESSAGES)") == (
        b"* STATUS Patients/Dupont (MESSAGES 1)\r\na8 OK STATUS completed\r\n"
    )
    assert w.cmd(b"a9", b"CREATE Patients") == b"a9 OK CREATE completed\r\n"
    assert w.cmd(b"b1", b"STATUS Patients (MESSAGES UIDNEXT)") == (
        b"* STATUS Patients (MESSAGES 0 UIDNEXT 1)\r\nb1 OK STATUS completed\r\n"
    )
    new = _uidvalidity(w, b"b2", b"Patients")
    assert new > old
    reply = w.cmd(b"b3", b"SELECT Patients")
    assert b"* 0 EXISTS\r\n" in reply and b"[UIDVALIDITY %d]" % new in reply
    assert reply.endswith(b"b3 OK [READ-WRITE] SELECT completed\r\n")
    w.close()


def test_recreated_mailbox_gets_a_greater_uidvalidity_within_the_same_second(
    imap_server: ImapHarness,
) -> None:
    """DELETE + CREATE of a leaf, back to back: the old UIDVALIDITY is the account's highest
    and its row is gone, yet the new one is greater (RFC 3501 §2.3.1.1, §6.3.4)."""
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = _login(imap_server)
    seen = []
    for n in range(3):
        assert w.cmd(b"c%d" % n, b"CREATE Brouillons/Ordonnances").endswith(b" OK CREATE completed\r\n")
        seen.append(_uidvalidity(w, b"s%d" % n, b"Brouillons/Ordonnances"))
        assert w.cmd(b"d%d" % n, b"DELETE Brouillons/Ordonnances").endswith(b" OK DELETE completed\r\n")
    assert seen == sorted(set(seen)), seen
    assert w.cmd(b"e1", b"CREATE Brouillons/Ordonnances").endswith(b" OK CREATE completed\r\n")
    assert _uidvalidity(w, b"e2", b"Brouillons/Ordonnances") > seen[-1]
    assert _uidvalidity(w, b"e3", b"Brouillons") < seen[0]  # the parent kept its own
    w.close()


def test_rename_inbox_and_delete_a_mailbox_selected_elsewhere(imap_server: ImapHarness) -> None:
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF])
    w = _login(imap_server)
    assert w.cmd(b"a1", b"RENAME INBOX Old/2024") == b"a1 OK RENAME completed\r\n"
    assert w.cmd(b"a2", b"STATUS INBOX (MESSAGES UIDNEXT)") == (
        b"* STATUS INBOX (MESSAGES 0 UIDNEXT 3)\r\na2 OK STATUS completed\r\n"
    )
    assert w.cmd(b"a3", b"STATUS Old/2024 (MESSAGES UIDNEXT)") == (
        b"* STATUS Old/2024 (MESSAGES 2 UIDNEXT 3)\r\na3 OK STATUS completed\r\n"
    )
    other = _login(imap_server)
    other.cmd(b"b1", b"SELECT Old/2024")
    assert w.cmd(b"a4", b"DELETE Old/2024") == b"a4 OK DELETE completed\r\n"
    other.send(b"b2 NOOP\r\n")
    assert other.closed()
    assert b"* BYE The selected mailbox was deleted" in other.buf
    imap_server.deliver(acc, [corpus.DIGEST])  # INBOX keeps counting: UIDs are never reused
    w.cmd(b"a5", b"SELECT INBOX")
    assert w.cmd(b"a6", b"FETCH 1 UID") == b"* 1 FETCH (UID 3)\r\na6 OK FETCH completed\r\n"
    w.close()
    other.close()
