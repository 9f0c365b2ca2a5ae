"""Regressions found by a review against real clients' expectations and RFC 3501 / 9051,
each reproduced over a real socket first (SQLite and PostgreSQL)."""

from __future__ import annotations

import tracemalloc

from tests.mailstore.imap.harness import ImapHarness, Wire

PASSWORD = "secret-password"


def _login(h: ImapHarness) -> Wire:
    return h.wire_login("claire@chu.test", PASSWORD)


def test_rename_onto_a_noselect_name_whose_inferior_exists(imap_server: ImapHarness) -> None:
    """RFC 3501 §6.3.5: renaming to a name that exists is an error, and the inferiors of
    the renamed mailbox follow it, so an inferior landing on an existing name is the same
    error: NO [ALREADYEXISTS], not an internal error, and nothing changes."""
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = _login(imap_server)
    assert w.cmd(b"a1", b"CREATE Cible/Sous") == b"a1 OK CREATE completed\r\n"
    assert w.cmd(b"a2", b"DELETE Cible") == b"a2 OK DELETE completed\r\n"  # \Noselect now
    assert w.cmd(b"a3", b"CREATE Source/Sous") == b"a3 OK CREATE completed\r\n"
    assert w.cmd(b"a4", b"RENAME Source Cible") == (
        b"a4 NO [ALREADYEXISTS] mailbox Cible/Sous already exists\r\n"
    )
    assert w.cmd(b"a5", b'LIST "" "*"').count(b"Source") == 2  # nothing moved
    w.close()


def test_rename_whose_inferiors_trade_names(imap_server: ImapHarness) -> None:
    """RFC 3501 §6.3.5: ``A/B`` renamed to ``A`` (a \\Noselect name) moves ``A/B/B/x`` to
    ``A/B/x`` while ``A/B/x`` itself moves to ``A/x``: the names swap within one rename."""
    imap_server.create_account("claire@chu.test", PASSWORD)
    w = _login(imap_server)
    for tag, name in ((b"a1", b"A/B/B/x"), (b"a2", b"A/B/x")):
        assert w.cmd(tag, b"CREATE " + name) == tag + b" OK CREATE completed\r\n"
    assert w.cmd(b"a3", b"DELETE A") == b"a3 OK DELETE completed\r\n"
    assert w.cmd(b"a4", b"RENAME A/B A") == b"a4 OK RENAME completed\r\n"
    assert w.cmd(b"a5", b'LIST "" "A/*"') == (
        b'* LIST (\\HasChildren) "/" A/B\r\n'
        b'* LIST (\\HasNoChildren) "/" A/B/x\r\n'
        b'* LIST (\\HasNoChildren) "/" A/x\r\n'
        b"a5 OK LIST completed\r\n"
    )
    w.close()


def test_rename_inbox_to_an_inferior_of_inbox(imap_server: ImapHarness) -> None:
    """RFC 3501 §6.3.5: renaming INBOX moves its messages to the new name and leaves the
    inferiors of INBOX alone, so the new name may well be one of them (``INBOX/old``)."""
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [b"From: a@b.c\r\nSubject: old mail\r\n\r\nbody\r\n"])
    w = _login(imap_server)
    assert w.cmd(b"a1", b"RENAME INBOX INBOX/old") == b"a1 OK RENAME completed\r\n"
    assert w.cmd(b"a2", b"STATUS INBOX/old (MESSAGES)") == (
        b"* STATUS INBOX/old (MESSAGES 1)\r\na2 OK STATUS completed\r\n"
    )
    assert w.cmd(b"a3", b"STATUS INBOX (MESSAGES)") == (
        b"* STATUS INBOX (MESSAGES 0)\r\na3 OK STATUS completed\r\n"
    )
    assert w.cmd(b"a4", b"RENAME Drafts Drafts/x").startswith(b"a4 NO [CANNOT]")
    w.close()


def test_download_of_a_whole_mailbox_holds_a_bounded_part_of_it(
    imap_server: ImapHarness,
) -> None:
    """``FETCH 1:* BODY.PEEK[]`` (a backup, a client syncing a mailbox of scans) is sent in
    batches bounded in bytes, not only in messages: 100 messages of 20 MB in a batch, and
    the next one read meanwhile, held gigabytes for one connection (RFC 3501 §6.4.5 puts no
    bound on the set; the server must bound its own memory)."""
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    line = b"B" * 76 + b"\r\n"
    count, size = 40, 1024 * 1024
    body = line * (size // len(line))
    for i in range(count):
        imap_server.deliver(acc, [b"From: a@b.c\r\nSubject: scan %d\r\n\r\n" % i + body])
    w = _login(imap_server)
    assert w.cmd(b"S", b"EXAMINE INBOX").endswith(b"EXAMINE completed\r\n")
    tracemalloc.start()
    try:
        w.send(b"F FETCH 1:* BODY.PEEK[]\r\n")
        received, tail = 0, b""
        while not tail.endswith(b"\r\nF OK FETCH completed\r\n"):
            chunk = w.sock.recv(1 << 20)
            assert chunk, "connection closed during FETCH"
            received += len(chunk)
            tail = (tail + chunk)[-64:]  # the test keeps nothing of what it reads
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert received > count * size
    # Without a bound in bytes: batches of 8 then 16 messages, read and decrypted in
    # several copies, well over the mailbox itself. With it: about 10 MB.
    assert peak < count * size // 2, f"{peak / 2**20:.1f} MiB held for a {count} MiB mailbox"
    w.close()


def test_envelope_address_lists_have_no_space_between_addresses(
    imap_server: ImapHarness,
) -> None:
    """RFC 3501 §9 / RFC 9051 §9: ``env-to = "(" 1*address ")"`` — the addresses of a
    list follow each other without a space (as Dovecot sends them), unlike the items of
    the envelope itself."""
    acc = imap_server.create_account("claire@chu.test", PASSWORD)
    imap_server.deliver(acc, [
        b"From: a@b.c\r\nTo: Paul <p@x.fr>, s@x.fr\r\nCc: Equipe: c@y.fr, d@y.fr;\r\n"
        b"Subject: two\r\n\r\nbody\r\n"
    ])
    w = _login(imap_server)
    assert w.cmd(b"S", b"EXAMINE INBOX").endswith(b"EXAMINE completed\r\n")
    assert w.cmd(b"F", b"FETCH 1 ENVELOPE") == (
        b'* 1 FETCH (ENVELOPE (NIL "two" ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) '
        b'((NIL NIL "a" "b.c")) (("Paul" NIL "p" "x.fr")(NIL NIL "s" "x.fr")) '
        b'((NIL NIL "Equipe" NIL)(NIL NIL "c" "y.fr")(NIL NIL "d" "y.fr")(NIL NIL NIL NIL)) '
        b"NIL NIL NIL))\r\nF OK FETCH completed\r\n"
    )
    w.close()
