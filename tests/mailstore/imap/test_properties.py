"""Hypothesis properties: what the formatter renders the parser reads back unchanged."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from mailstore.imap import commands as c
from mailstore.imap import formatter, mutf7
from mailstore.imap.fetch_items import FetchAtt, Section, fetch_atts
from mailstore.imap.framing import CommandBytes, Framer, NeedContinuation
from mailstore.imap.lexer import ASTRING_CHARS, TAG_CHARS, Cursor
from mailstore.imap.parser import parse_command
from mailstore.imap.search_keys import (
    All,
    And,
    DateKey,
    FlagKey,
    HeaderKey,
    Not,
    Or,
    SearchKey,
    SetKey,
    SizeKey,
    TextKey,
)
from mailstore.imap.seqset import SeqSet, compress

tags = st.text(st.sampled_from(sorted(chr(x) for x in TAG_CHARS)), min_size=1, max_size=8).map(
    str.encode
)
any_bytes = st.binary(max_size=60).filter(lambda b: b"\x00" not in b)
names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20
).filter(lambda s: s.upper() != "INBOX")
numbers = st.integers(min_value=1, max_value=2**32 - 1)
bounds = st.one_of(st.none(), numbers)
seqsets = st.lists(st.tuples(bounds, bounds), min_size=1, max_size=5).map(
    lambda rs: SeqSet(tuple(rs))
)


def wire_string(value: bytes, form: int) -> bytes:
    """One of the three ways to send a string: astring/quoted choice, literal, literal+."""
    if form == 0:
        return formatter.astring(value)
    if form == 1:
        return b"{%d}\r\n" % len(value) + value
    return b"{%d+}\r\n" % len(value) + value


@settings(max_examples=300)
@given(any_bytes)
def test_formatter_strings_read_back(value: bytes) -> None:
    for utf8 in (False, True):
        cur = Cursor(formatter.string(value, utf8=utf8))
        assert cur.string() == value
        assert cur.at_end()


@settings(max_examples=300)
@given(tags, any_bytes, any_bytes, st.integers(0, 2), st.integers(0, 2))
def test_login_round_trip(tag: bytes, user: bytes, pw: bytes, f1: int, f2: int) -> None:
    data = tag + b" LOGIN " + wire_string(user, f1) + b" " + wire_string(pw, f2)
    assert parse_command(data) == c.Login(tag, "LOGIN", user, pw)


@settings(max_examples=300)
@given(tags, names, st.integers(0, 2), st.booleans())
def test_mailbox_names_round_trip(tag: bytes, name: str, form: int, utf8: bool) -> None:
    raw = name.encode("utf-8") if utf8 else mutf7.encode(name)
    data = tag + b" DELETE " + wire_string(raw, form)
    assert parse_command(data, utf8=utf8) == c.MailboxCommand(tag, "DELETE", name)


@given(seqsets)
def test_seqset_round_trip(s: SeqSet) -> None:
    assert SeqSet.from_bytes(s.render()) == s
    assert SeqSet.from_bytes(s.render()).render() == s.render()


@given(st.lists(st.integers(1, 500), max_size=50))
def test_compress_names_the_same_numbers(values: list[int]) -> None:
    if not values:
        return
    s = SeqSet.from_bytes(compress(values))
    assert s.select_seqnums(500) == sorted(set(values))


texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
leaf_keys: st.SearchStrategy[SearchKey] = st.one_of(
    st.just(All()),
    st.sampled_from(["\\Seen", "\\Deleted", "\\Flagged", "$Label"]).map(FlagKey),
    st.tuples(st.sampled_from(["from", "to", "cc", "bcc", "subject", "x-mss-mes"]), texts).map(
        lambda t: HeaderKey(*t)
    ),
    st.tuples(texts, st.booleans()).map(lambda t: TextKey(*t)),
    st.tuples(st.sampled_from(["before", "on", "since"]),
              st.dates(date(1990, 1, 1), date(2100, 1, 1)), st.booleans()).map(
        lambda t: DateKey(*t)
    ),
    st.tuples(st.booleans(), st.integers(0, 10**9)).map(lambda t: SizeKey(*t)),
    st.tuples(seqsets, st.booleans()).map(lambda t: SetKey(*t)),
)
search_keys = st.recursive(
    leaf_keys,
    lambda inner: st.one_of(
        inner.map(Not),
        st.tuples(inner, inner).map(lambda t: Or(*t)),
        st.lists(inner, min_size=2, max_size=3).map(lambda ks: And(tuple(ks))),
    ),
    max_leaves=8,
)
_FLAG_WORDS = {"\\Seen": "SEEN", "\\Deleted": "DELETED", "\\Flagged": "FLAGGED"}


def render_key(key: SearchKey) -> bytes:
    if isinstance(key, All):
        return b"ALL"
    if isinstance(key, FlagKey):
        word = _FLAG_WORDS.get(key.flag)
        return word.encode() if word else b"KEYWORD " + key.flag.encode()
    if isinstance(key, HeaderKey):
        value = formatter.string(key.value.encode(), utf8=True)
        if key.field in ("from", "to", "cc", "bcc", "subject"):
            return key.field.upper().encode() + b" " + value
        return b"HEADER " + key.field.encode() + b" " + value
    if isinstance(key, TextKey):
        return (b"BODY " if key.body_only else b"TEXT ") + formatter.string(
            key.value.encode(), utf8=True
        )
    if isinstance(key, DateKey):
        word = ("SENT" if key.sent else "") + key.op.upper()
        return f"{word} {key.day.day}-{key.day.strftime('%b')}-{key.day.year}".encode()
    if isinstance(key, SizeKey):
        return b"LARGER %d" % key.size if key.larger else b"SMALLER %d" % key.size
    if isinstance(key, SetKey):
        return (b"UID " if key.uid else b"") + key.seqset.render()
    if isinstance(key, Not):
        return b"NOT " + render_key(key.key)
    if isinstance(key, Or):
        return b"OR " + render_key(key.left) + b" " + render_key(key.right)
    assert isinstance(key, And)
    return b"(" + b" ".join(render_key(k) for k in key.keys) + b")"


@settings(max_examples=300, deadline=None)
@given(tags, search_keys, st.booleans())
def test_search_programs_round_trip(tag: bytes, key: SearchKey, uid: bool) -> None:
    data = tag + (b" UID" if uid else b"") + b" SEARCH CHARSET UTF-8 " + render_key(key)
    cmd = parse_command(data)
    assert isinstance(cmd, c.Search)
    assert cmd.key == key and cmd.uid == uid


sections = st.one_of(
    st.just(Section()),
    st.sampled_from(["HEADER", "TEXT"]).map(lambda t: Section((), t)),
    st.tuples(st.lists(st.integers(1, 30), min_size=1, max_size=4).map(tuple),
              st.sampled_from([None, "MIME", "HEADER", "TEXT"])).map(lambda t: Section(*t)),
    st.tuples(st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
              st.lists(st.text(st.sampled_from(sorted(chr(x) for x in ASTRING_CHARS)),
                               min_size=1, max_size=10).map(str.encode),
                       min_size=1, max_size=3)).map(
        lambda t: Section((), t[0], tuple(t[1]))
    ),
)
atts = st.one_of(
    st.sampled_from(["ENVELOPE", "FLAGS", "UID", "BODYSTRUCTURE", "RFC822.SIZE", "MODSEQ"]).map(
        FetchAtt
    ),
    st.tuples(sections, st.one_of(st.none(), st.tuples(st.integers(0, 10**6),
                                                       st.integers(1, 10**6))),
              st.booleans()).map(lambda t: FetchAtt("BODY[]", t[0], t[1], t[2])),
)


def render_att(att: FetchAtt) -> bytes:
    if att.section is None:
        return att.name.encode()
    out = b"BODY.PEEK" if att.peek else b"BODY"
    out += att.section.render()
    if att.partial:
        out += b"<%d.%d>" % att.partial
    return out


@settings(max_examples=300)
@given(st.lists(atts, min_size=1, max_size=6))
def test_fetch_items_round_trip(items: list[FetchAtt]) -> None:
    data = b"(" + b" ".join(render_att(a) for a in items) + b")"
    cur = Cursor(data)
    assert list(fetch_atts(cur)) == items
    assert cur.at_end()


@settings(max_examples=200)
@given(st.lists(st.tuples(tags, any_bytes, st.integers(0, 2)), min_size=1, max_size=5),
       st.integers(1, 7))
def test_framing_any_chunking_gives_the_same_commands(
    cmds: list[tuple[bytes, bytes, int]], chunk: int
) -> None:
    stream = b"".join(t + b" LOGIN u " + wire_string(v, f) + b"\r\n" for t, v, f in cmds)
    fr = Framer()
    got: list[bytes] = []
    for i in range(0, len(stream), chunk):
        fr.feed(stream[i : i + chunk])
        while (ev := fr.next_event()) is not None:
            if isinstance(ev, CommandBytes):
                got.append(ev.data)
            else:
                assert isinstance(ev, NeedContinuation)
    assert [parse_command(g) for g in got] == [
        c.Login(t, "LOGIN", b"u", v) for t, v, _ in cmds
    ]


_WORDS = [b"a1", b" ", b"UID", b"FETCH", b"SEARCH", b"STORE", b"LIST", b"APPEND", b"(", b")",
          b"[", b"]", b"<", b">", b"BODY", b".PEEK", b"HEADER.FIELDS", b"1:*", b"$", b"*", b'"',
          b"\\", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n", b"NOT", b"OR", b"INBOX", b"&AOk-", b"\x00",
          b"\xc3\xa9", b"FLAGS", b"+FLAGS.SILENT", b"\\Seen", b"CHARSET", b"UTF-8", b"RETURN",
          b"MODSEQ", b"CHANGEDSINCE", b"1", b"0", b"4294967296", b"ENABLE", b"ID", b"NIL"]


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.binary(max_size=80),
                 st.lists(st.sampled_from(_WORDS), max_size=14).map(b"".join)))
def test_the_parser_only_ever_answers_bad_or_no(data: bytes) -> None:
    """Fuzzing: any bytes either parse or raise the error that becomes BAD/NO."""
    from mailstore.imap.errors import ImapError

    for utf8 in (False, True):
        try:
            parse_command(data, utf8=utf8)
        except ImapError:
            pass
