"""The command parser: bytes in, typed commands out (no sockets)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from mailstore.imap import commands as c
from mailstore.imap.errors import CommandNo, ParseError
from mailstore.imap.fetch_items import FetchAtt, Section
from mailstore.imap.parser import parse_command
from mailstore.imap.search_keys import (
    All,
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    Not,
    Or,
    SetKey,
    SizeKey,
    TextKey,
)
from mailstore.imap.seqset import SeqSet


def test_simple_commands_are_case_insensitive() -> None:
    for name in ("CAPABILITY", "noop", "Logout", "STARTTLS", "check", "CLOSE", "UNSELECT",
                 "IDLE", "NAMESPACE", "EXPUNGE"):
        cmd = parse_command(b"a1 " + name.encode())
        assert cmd.tag == b"a1"
        assert cmd.name == name.upper()


def test_login_with_atoms_quoted_and_literal() -> None:
    cmd = parse_command(b'A001 LOGIN claire.martin@x.fr "p\\"ss w\\\\rd"')
    assert cmd == c.Login(b"A001", "LOGIN", b"claire.martin@x.fr", b'p"ss w\\rd')
    cmd = parse_command(b"A2 LOGIN {4}\r\nuser {5+}\r\npa ss")
    assert isinstance(cmd, c.Login)
    assert (cmd.user, cmd.password) == (b"user", b"pa ss")


def test_authenticate_with_and_without_initial_response() -> None:
    assert parse_command(b"a AUTHENTICATE plain") == c.Authenticate(b"a", "AUTHENTICATE", "PLAIN")
    cmd = parse_command(b"a AUTHENTICATE PLAIN AGEAYg==")
    assert isinstance(cmd, c.Authenticate) and cmd.initial == b"AGEAYg=="
    cmd = parse_command(b"a AUTHENTICATE EXTERNAL =")
    assert isinstance(cmd, c.Authenticate) and cmd.initial == b"="


def test_select_examine_condstore_and_inbox_case() -> None:
    assert parse_command(b"s SELECT inbox") == c.Select(b"s", "SELECT", "INBOX")
    assert parse_command(b'e EXAMINE "Sent" (CONDSTORE)') == c.Select(
        b"e", "EXAMINE", "Sent", True
    )
    with pytest.raises(ParseError, match="unsupported SELECT parameter QRESYNC"):
        parse_command(b"s SELECT INBOX (QRESYNC (1 2))")


def test_mailbox_names_modified_utf7_and_utf8() -> None:
    cmd = parse_command(b"a CREATE Re&AOc-us/&AMk-t&AOk-")
    assert cmd == c.MailboxCommand(b"a", "CREATE", "Reçus/Été")
    cmd = parse_command("a CREATE \"Reçus\"".encode(), utf8=True)
    assert isinstance(cmd, c.MailboxCommand) and cmd.mailbox == "Reçus"
    with pytest.raises(ParseError, match="invalid mailbox name"):
        parse_command(b"a CREATE &Jjo")


def test_create_special_use() -> None:
    cmd = parse_command(b"a CREATE Factures (USE (\\Archive))")
    assert cmd == c.MailboxCommand(b"a", "CREATE", "Factures", ("\\Archive",))


def test_rename_delete_subscribe() -> None:
    assert parse_command(b'r RENAME "A/B" C') == c.Rename(b"r", "RENAME", "A/B", "C")
    assert parse_command(b"d DELETE X") == c.MailboxCommand(b"d", "DELETE", "X")
    assert parse_command(b"d UNSUBSCRIBE X") == c.MailboxCommand(b"d", "UNSUBSCRIBE", "X")


def test_list_basic_and_extended() -> None:
    assert parse_command(b'l LIST "" *') == c.List(b"l", "LIST", "", ("*",))
    assert parse_command(b"l LSUB \"\" %") == c.List(b"l", "LSUB", "", ("%",))
    cmd = parse_command(
        b'l LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %/%) '
        b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN SIZE))"
    )
    assert cmd == c.List(
        b"l", "LIST", "", ("INBOX", "%/%"), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
        frozenset({"CHILDREN", "SPECIAL-USE", "STATUS"}), ("MESSAGES", "UNSEEN", "SIZE"), True,
    )
    with pytest.raises(ParseError, match="RECURSIVEMATCH needs"):
        parse_command(b'l LIST (RECURSIVEMATCH) "" *')
    assert parse_command(b'l LIST "" "" RETURN ()') == c.List(
        b"l", "LIST", "", ("",), extended=True
    )


def test_status_items() -> None:
    cmd = parse_command(b"s STATUS INBOX (MESSAGES UIDNEXT SIZE HIGHESTMODSEQ deleted)")
    assert cmd == c.Status(
        b"s", "STATUS", "INBOX", ("MESSAGES", "UIDNEXT", "SIZE", "HIGHESTMODSEQ", "DELETED")
    )
    with pytest.raises(ParseError, match="unknown STATUS item FOO"):
        parse_command(b"s STATUS INBOX (FOO)")


def test_append_flags_date_literal_and_binary() -> None:
    cmd = parse_command(
        b'a APPEND Drafts (\\seen \\Draft $Label) "05-Mar-2024 10:01:02 +0100" {5}\r\nhello'
    )
    assert cmd == c.Append(
        b"a", "APPEND", "Drafts", ("\\Seen", "\\Draft", "$Label"),
        datetime(2024, 3, 5, 10, 1, 2, tzinfo=timezone(timedelta(hours=1))), b"hello",
    )
    cmd = parse_command(b'a APPEND INBOX " 5-Mar-2024 10:01:02 -0000" ~{3+}\r\na\x00b')
    assert isinstance(cmd, c.Append)
    assert cmd.binary and cmd.message == b"a\x00b"
    assert cmd.internal_date == datetime(2024, 3, 5, 10, 1, 2, tzinfo=UTC)
    with pytest.raises(ParseError, match="NUL in a literal"):
        parse_command(b"a APPEND INBOX {3}\r\na\x00b")
    with pytest.raises(ParseError, match="MULTIAPPEND"):
        parse_command(b"a APPEND INBOX {1}\r\na {1}\r\nb")


def test_fetch_items() -> None:
    cmd = parse_command(
        b"f UID FETCH 1:* (UID FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> "
        b"BINARY[2] BINARY.SIZE[2] BODY[] RFC822.SIZE MODSEQ) (CHANGEDSINCE 12345)"
    )
    assert isinstance(cmd, c.Fetch)
    assert cmd.uid and cmd.changedsince == 12345
    assert cmd.seqset == SeqSet(((1, None),))
    names = [i.name for i in cmd.items]
    assert names == ["UID", "FLAGS", "BODY[]", "BINARY[]", "BINARY.SIZE[]", "BODY[]",
                     "RFC822.SIZE", "MODSEQ"]
    peek = cmd.items[2]
    assert peek == FetchAtt("BODY[]", Section((1, 2), "HEADER.FIELDS", (b"From", b"To")),
                            (0, 100), True)
    assert peek.response_name() == b"BODY[1.2.HEADER.FIELDS (From To)]<0>"
    assert not peek.sets_seen and cmd.items[5].sets_seen


def test_fetch_macros_and_sections() -> None:
    cmd = parse_command(b"f FETCH 1 ALL")
    assert isinstance(cmd, c.Fetch)
    assert [i.name for i in cmd.items] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]
    cmd = parse_command(b"f FETCH 2 (BODY[3.MIME] BODY[TEXT] body[header] BODY[2.1])")
    assert isinstance(cmd, c.Fetch)
    assert [i.section for i in cmd.items] == [
        Section((3,), "MIME"), Section((), "TEXT"), Section((), "HEADER"), Section((2, 1)),
    ]
    for bad in (b"f FETCH 1 (BODY[MIME])", b"f FETCH 1 FOO", b"f FETCH 1 (UID",
                b"f FETCH 0 UID", b"f FETCH 1 BODY[1]<5>"):
        with pytest.raises(ParseError):
            parse_command(bad)


def test_store_variants() -> None:
    cmd = parse_command(b"s STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    assert cmd == c.Store(b"s", "STORE", False, SeqSet(((1, 3),)), "+", True, ("\\Deleted",))
    cmd = parse_command(b"s UID STORE 7 (UNCHANGEDSINCE 40) FLAGS \\Seen $Important")
    assert cmd == c.Store(
        b"s", "STORE", True, SeqSet(((7, 7),)), "", False, ("\\Seen", "$Important"), 40
    )
    cmd = parse_command(b"s STORE 1 -FLAGS ()")
    assert isinstance(cmd, c.Store) and cmd.flags == () and cmd.mode == "-"


def test_copy_move_expunge() -> None:
    assert parse_command(b"c COPY 1:2 Trash") == c.Copy(
        b"c", "COPY", False, SeqSet(((1, 2),)), "Trash"
    )
    assert parse_command(b"m UID MOVE 4,9 Archive") == c.Copy(
        b"m", "MOVE", True, SeqSet(((4, 4), (9, 9))), "Archive"
    )
    assert parse_command(b"e UID EXPUNGE 3:5") == c.Expunge(
        b"e", "EXPUNGE", True, SeqSet(((3, 5),))
    )


def test_search_program() -> None:
    cmd = parse_command(
        b's UID SEARCH CHARSET UTF-8 OR FROM "martin" (TO x NOT SEEN) SINCE 1-Feb-2024 '
        b"LARGER 100 UID 5:* 2,4 HEADER X-MSS-MES FIN BODY {6}\r\nr\xc3\xa9sum MODSEQ 7 NEW"
    )
    assert isinstance(cmd, c.Search)
    assert cmd.uid and cmd.charset == "UTF-8" and cmd.returns is None
    assert cmd.key == And((
        Or(HeaderKey("from", "martin"), And((HeaderKey("to", "x"), Not(FlagKey("\\Seen"))))),
        DateKey("since", date(2024, 2, 1), False),
        SizeKey(True, 100),
        SetKey(SeqSet(((5, None),)), True),
        SetKey(SeqSet(((2, 2), (4, 4))), False),
        HeaderKey("x-mss-mes", "FIN"),
        TextKey("résum", True),
        ModSeqKey(7),
        And((FlagKey("\\Recent"), Not(FlagKey("\\Seen")))),
    ))


def test_search_return_and_charset_errors() -> None:
    cmd = parse_command(b"s SEARCH RETURN (MIN COUNT) ALL")
    assert isinstance(cmd, c.Search) and cmd.returns == ("MIN", "COUNT") and cmd.key == All()
    cmd = parse_command(b"s SEARCH RETURN () UNSEEN")
    assert isinstance(cmd, c.Search) and cmd.returns == ("ALL",)
    with pytest.raises(CommandNo) as err:
        parse_command(b"s SEARCH CHARSET KOI8-R ALL")
    assert err.value.code == b"BADCHARSET (US-ASCII UTF-8)"
    with pytest.raises(ParseError, match="unknown search key FOO"):
        parse_command(b"s SEARCH FOO")
    with pytest.raises(ParseError, match="unknown month"):
        parse_command(b"s SEARCH BEFORE 1-Foo-2024")


def test_enable_id() -> None:
    assert parse_command(b"e ENABLE condstore IMAP4rev2") == c.Enable(
        b"e", "ENABLE", ("CONDSTORE", "IMAP4REV2")
    )
    assert parse_command(b"i ID NIL") == c.Id(b"i", "ID", None)
    assert parse_command(b'i ID ("name" "neomutt" "version" NIL)') == c.Id(
        b"i", "ID", ((b"name", b"neomutt"), (b"version", None))
    )


@pytest.mark.parametrize(
    ("data", "reason", "tag"),
    [
        (b"", "missing or invalid tag", None),
        (b"+x NOOP", "missing or invalid tag", None),
        (b"a1", "missing argument", b"a1"),
        (b"a1 FROB", "unknown command FROB", b"a1"),
        (b"a1 UID NOOP", "UID NOOP is not a command", b"a1"),
        (b"a1 NOOP extra", "unexpected characters", b"a1"),
        (b'a1 LOGIN "unterminated', "unterminated quoted string", b"a1"),
        (b"a1 LOGIN {10}\r\nshort", "literal shorter than announced", b"a1"),
        (b"a1 SELECT", "missing argument", b"a1"),
        (b"a1 FETCH 1:x FLAGS", "expected a message number or UID", b"a1"),
        (b"a1 STORE 1 FLAG (\\Seen)", "expected FLAGS, \\+FLAGS or -FLAGS", b"a1"),
        (b"a1 SEARCH " + b"(" * 60 + b"ALL" + b")" * 60, "nested too deeply", b"a1"),
    ],
)
def test_syntax_errors_have_reasons_and_tags(data: bytes, reason: str, tag: bytes | None) -> None:
    with pytest.raises(ParseError, match=reason) as err:
        parse_command(data)
    assert err.value.tag == tag
