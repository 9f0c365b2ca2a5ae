"""FETCH responses from a message row, its index and its bytes (RFC 3501 §7.4.2,
RFC 9051 §7.5.2, BINARY RFC 3516 §4.2, MODSEQ RFC 7162 §3.1.4). Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mailstore.imap.errors import CommandNo
from mailstore.imap.fetch_items import FetchAtt
from mailstore.imap.lexer import MONTHS
from mailstore.imap.sections import binary_section, body_section, header_fields
from mailstore.imap_messages import Loaded
from mailstore.mime_index import body_offset


def internal_date(when: datetime) -> bytes:
    """``"05-Mar-2024 10:01:02 +0000"`` (RFC 3501 §9 date-time)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f'"{when.day:02d}-{MONTHS[when.month - 1]}-{when.year:04d} '
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    ).encode()


def flags_value(flags: str, recent: bool) -> bytes:
    out = flags.encode()
    if recent:
        out = out + b" \\Recent" if out else b"\\Recent"
    return b"(" + out + b")"


@dataclass(frozen=True, slots=True)
class Needs:
    """What FETCH items need loaded: the index (``meta``), the message bytes, the
    internal date."""

    meta: bool
    body: bool
    dates: bool


def needs(items: Sequence[FetchAtt]) -> Needs:
    meta = body = dates = False
    for att in items:
        if att.name in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
            meta = True
        elif att.name == "INTERNALDATE":
            dates = True
        elif att.name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            body = True
        elif att.section is not None:
            body = True
            if att.section.part:  # top-level HEADER/TEXT/fields come from the bytes alone
                meta = True
    return Needs(meta, body, dates)


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def _header_end(raw: bytes, meta: dict[str, object] | None) -> int:
    if meta is not None:
        tree = meta["tree"]
        assert isinstance(tree, dict)
        return int(tree["b"])
    return body_offset(raw)


def render_item(att: FetchAtt, item: Loaded, *, recent: bool) -> bytes:
    row = item.row
    name = att.name
    if name == "UID":
        return b"UID %d" % row.uid
    if name == "FLAGS":
        return b"FLAGS " + flags_value(row.flags, recent)
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + internal_date(row.internal_date)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % row.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % row.modseq
    meta = item.meta
    if name in ("ENVELOPE", "BODY", "BODYSTRUCTURE"):
        assert meta is not None
        return name.encode() + b" " + str(meta[name.lower()]).encode("latin-1")
    raw = item.body
    assert raw is not None
    if name == "RFC822":
        return b"RFC822 " + _literal(raw)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + _literal(raw[: _header_end(raw, meta)])
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + _literal(raw[_header_end(raw, meta) :])
    section = att.section
    assert section is not None
    if name == "BODY[]":
        if section.part:
            assert meta is not None
            data = body_section(raw, meta["tree"], section)
        elif section.text is None:
            data = raw
        elif section.text == "TEXT":
            data = raw[_header_end(raw, meta) :]
        elif section.text == "HEADER":
            data = raw[: _header_end(raw, meta)]
        else:
            data = header_fields(raw[: _header_end(raw, meta)], section.fields,
                                 negate=section.text == "HEADER.FIELDS.NOT")
        data = _partial(data, att.partial)
        return att.response_name() + b" " + _literal(data)
    assert meta is not None
    decoded = binary_section(raw, meta["tree"], section.part)
    if name == "BINARY.SIZE[]":
        if decoded is None:
            raise CommandNo("no such body part", b"NONEXISTENT")
        return att.response_name() + b" %d" % len(decoded)
    if decoded is None:
        return att.response_name() + b" NIL"
    decoded = _partial(decoded, att.partial)
    if b"\x00" in decoded:
        return att.response_name() + b" ~{%d}\r\n" % len(decoded) + decoded
    return att.response_name() + b" " + _literal(decoded)


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    start, length = partial
    return data[start : start + length]


def render_fetch(seq: int, items: Sequence[FetchAtt], item: Loaded, *, recent: bool) -> bytes:
    parts = []
    for att in items:  # the common items inline (FETCH 1:* is the hot path)
        name = att.name
        if name == "UID":
            parts.append(b"UID %d" % item.row.uid)
        elif name == "FLAGS":
            parts.append(b"FLAGS " + flags_value(item.row.flags, recent))
        elif name == "ENVELOPE" and item.meta is not None:
            parts.append(b"ENVELOPE " + item.meta["envelope"].encode("latin-1"))
        else:
            parts.append(render_item(att, item, recent=recent))
    return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"

