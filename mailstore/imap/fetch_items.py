"""FETCH data items (RFC 3501 §6.4.5, RFC 9051 §6.4.5, BINARY RFC 3516 §4.1, MODSEQ RFC 7162)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailstore.imap.lexer import MAX_NUMBER, Cursor

_NAME_RE = re.compile(rb"[A-Za-z0-9.]+")

SIMPLE_ITEMS = frozenset(
    {
        "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
        "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ",
    }
)
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_MSGTEXT = ("HEADER.FIELDS.NOT", "HEADER.FIELDS", "HEADER", "TEXT")


@dataclass(frozen=True, slots=True)
class Section:
    """``part`` is the dotted part number (empty for the whole message); ``text`` one of
    HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or ``None``."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[bytes, ...] = ()

    def render(self) -> bytes:
        out = b".".join(str(p).encode() for p in self.part)
        if self.text:
            out += (b"." if out else b"") + self.text.encode()
        if self.fields:
            out += b" (" + b" ".join(self.fields) + b")"
        return b"[" + out + b"]"


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One requested item. ``name`` is a simple item name, ``BODY[]``, ``BINARY[]`` or
    ``BINARY.SIZE[]`` for the sectioned forms."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """Whether fetching this sets ``\\Seen`` (RFC 3501 §6.4.5)."""
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name in ("BODY[]", "BINARY[]") and not self.peek

    def response_name(self) -> bytes:
        """The item name in the FETCH response: ``BODY[1.MIME]<0>`` (no ``.PEEK``)."""
        if self.section is None:
            return self.name.encode()
        base = self.name[:-2].encode() + self.section.render()
        if self.partial is not None:
            base += b"<%d>" % self.partial[0]
        return base


def _section(cur: Cursor, binary: bool) -> Section:
    cur.expect(b"[")
    part: list[int] = []
    text: str | None = None
    fields: tuple[bytes, ...] = ()
    if cur.take(b"]"):
        return Section()
    if 0x31 <= cur.peek() <= 0x39:
        part.append(cur.nz_number(what="a part number"))
        while cur.peek() == 0x2E and cur.data[cur.pos + 1 : cur.pos + 2].isdigit():
            cur.pos += 1
            part.append(cur.nz_number(what="a part number"))
        if len(part) > 100:
            raise cur.error("part number too deep")
        if not binary and cur.take(b"."):
            text = _section_text(cur, allow_mime=True)
    elif not binary:
        text = _section_text(cur, allow_mime=False)
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        cur.sp()
        cur.expect(b"(")
        names = [cur.astring("a header field name")]
        while cur.take(b" "):
            names.append(cur.astring("a header field name"))
        cur.expect(b")")
        fields = tuple(names)
    cur.expect(b"]")
    return Section(tuple(part), text, fields)


def _section_text(cur: Cursor, *, allow_mime: bool) -> str:
    for word in _MSGTEXT:
        if cur.take(word.encode()):
            return word
    if allow_mime and cur.take(b"MIME"):
        return "MIME"
    raise cur.error("expected HEADER, HEADER.FIELDS, TEXT or MIME in a section")


def _partial(cur: Cursor) -> tuple[int, int] | None:
    if cur.peek() != 0x3C:  # "<"
        return None
    cur.pos += 1
    start = cur.number(what="a partial offset")
    cur.expect(b".", "<offset.length>")
    length = cur.nz_number(maximum=MAX_NUMBER, what="a partial length")
    cur.expect(b">")
    return start, length


def fetch_att(cur: Cursor) -> FetchAtt:
    m = _NAME_RE.match(cur.data, cur.pos)
    if m is None:
        raise cur.error("expected a fetch item")
    word = m.group(0).upper().decode("ascii")
    cur.pos = m.end()
    if cur.peek() == 0x5B:  # "["
        if word in ("BODY", "BODY.PEEK"):
            section = _section(cur, binary=False)
            return FetchAtt("BODY[]", section, _partial(cur), peek=word == "BODY.PEEK")
        if word in ("BINARY", "BINARY.PEEK"):
            section = _section(cur, binary=True)
            return FetchAtt("BINARY[]", section, _partial(cur), peek=word == "BINARY.PEEK")
        if word == "BINARY.SIZE":
            return FetchAtt("BINARY.SIZE[]", _section(cur, binary=True))
        raise cur.error(f"{word} takes no section")
    if word in SIMPLE_ITEMS:
        return FetchAtt(word)
    raise cur.error(f"unknown fetch item {word}")


def fetch_atts(cur: Cursor) -> tuple[FetchAtt, ...]:
    """``"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"``."""
    if cur.peek() == 0x28:
        cur.pos += 1
        items = [fetch_att(cur)]
        while cur.take(b" "):
            items.append(fetch_att(cur))
        cur.expect(b")")
        return tuple(items)
    m = _NAME_RE.match(cur.data, cur.pos)
    if m is not None and m.group(0).upper().decode("ascii") in MACROS:
        word = m.group(0).upper().decode("ascii")
        cur.pos = m.end()
        return tuple(FetchAtt(n) for n in MACROS[word])
    return (fetch_att(cur),)
