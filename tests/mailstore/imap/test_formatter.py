"""Responses rendered to bytes (RFC 3501 §9 grammar)."""

from __future__ import annotations

import pytest

from mailstore.imap import formatter as f
from mailstore.imap import mutf7
from mailstore.imap.seqset import SeqSet, compress, ordered_pairs


def test_values() -> None:
    assert f.render(None) == b"NIL"
    assert f.render(42) == b"42"
    assert f.render(b'say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert f.render("été") == b"{5}\r\n\xc3\xa9t\xc3\xa9"
    assert f.render("été", utf8=True) == '"été"'.encode()
    assert f.render(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert f.render(b"\xff", utf8=True) == b"{1}\r\n\xff"
    assert f.render([b"a", None, [1, f.Atom(b"\\Seen")]]) == b'("a" NIL (1 \\Seen))'
    assert f.render(f.Literal(b"x")) == b"{1}\r\nx"
    assert f.render(f.Literal8(b"\x00")) == b"~{1}\r\n\x00"
    assert f.render(b"x" * 2000).startswith(b"{2000}\r\n")
    with pytest.raises(TypeError):
        f.render(True)


def test_astring() -> None:
    assert f.astring(b"INBOX") == b"INBOX"
    assert f.astring(b"a b") == b'"a b"'
    assert f.astring(b"") == b'""'


def test_status_lines() -> None:
    assert f.tagged(b"A1", b"OK", "done") == b"A1 OK done\r\n"
    assert f.tagged(b"A1", b"NO", "no such\r\nmailbox", b"TRYCREATE") == (
        b"A1 NO [TRYCREATE] no such  mailbox\r\n"
    )
    assert f.untagged_status(b"BYE", "bye") == b"* BYE bye\r\n"
    assert f.untagged(b"5 EXISTS") == b"* 5 EXISTS\r\n"
    assert f.continuation() == b"+ \r\n"
    assert f.continuation("Ready") == b"+ Ready\r\n"
    assert f.fetch_response(3, [b"UID 7", b"FLAGS ()"]) == b"* 3 FETCH (UID 7 FLAGS ())\r\n"
    assert f.flag_list(["\\Seen", "$x"]) == b"(\\Seen $x)"


def test_mutf7() -> None:
    assert mutf7.encode("Reçus/Été & co") == b"Re&AOc-us/&AMk-t&AOk- &- co"
    assert mutf7.decode(b"Re&AOc-us/&AMk-t&AOk- &- co") == "Reçus/Été & co"
    assert mutf7.encode("日本語") == b"&ZeVnLIqe-"
    assert mutf7.decode(b"&ZeVnLIqe-") == "日本語"
    for bad in (b"&AOc", b"&A-", b"\xc3\xa9", b"&AGE-"):
        with pytest.raises(mutf7.MUtf7Error):
            mutf7.decode(bad)


def test_seqset() -> None:
    s = SeqSet.from_bytes(b"1:3,7,9:*")
    assert s.render() == b"1:3,7,9:*"
    assert s.select_seqnums(10) == [1, 2, 3, 7, 9, 10]
    assert s.select_sorted([2, 3, 5, 7, 11]) == [0, 1, 3, 4]
    # RFC 3501 §6.4.8: 559:* includes the last UID even when 559 is higher
    assert SeqSet.from_bytes(b"559:*").select_sorted([3, 4]) == [1]
    assert SeqSet.from_bytes(b"5:2").select_seqnums(9) == [2, 3, 4, 5]
    assert SeqSet.from_bytes(b"$").saved
    assert compress([5, 1, 2, 3, 9, 10]) == b"1:3,5,9:10"
    assert ordered_pairs([4, 5, 6, 9], [10, 11, 13, 14]) == (b"4:5,6,9", b"10:11,13,14")
