"""Header fields on bytes, as IMAP needs them (RFC 5322 §2.2 and §3.4, RFC 2045 §5.1).

Everything here keeps the original bytes where IMAP sends them back verbatim (ENVELOPE
strings, BODYSTRUCTURE parameters) and decodes (RFC 2047, 8-bit UTF-8 headers of RFC 6532)
only for SEARCH. Parsing is lenient: real-world mail breaks every rule at least once.
"""

from __future__ import annotations

import base64
import binascii
import re

_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_EOL = re.compile(rb"\r?\n")


def split_fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """``(name, raw value)`` pairs of a header block; the value keeps its folding."""
    fields: list[tuple[bytes, bytes]] = []
    name: bytes | None = None
    value = bytearray()
    for line in header.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if name is not None:
                value += b"\r\n" + line
            continue
        if name is not None:
            fields.append((name, bytes(value)))
        colon = line.find(b":")
        if colon <= 0:
            name = None  # not a header field (an mbox "From " line...): skip it
            continue
        name = line[:colon].strip()
        value = bytearray(line[colon + 1 :])
    if name is not None:
        fields.append((name, bytes(value)))
    return fields


def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3 unfolding, then outer whitespace removed."""
    if b"\n" not in value:
        return value.strip()
    return _FOLD.sub(b"", value).strip()


def first_values(fields: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Lower-case name → raw value of the first field of that name: :func:`first_in`
    then answers each lookup without scanning the fields again."""
    index: dict[bytes, bytes] = {}
    for n, v in fields:
        index.setdefault(n.lower(), v)
    return index


def first_in(index: dict[bytes, bytes], name: bytes) -> bytes | None:
    """The unfolded value of the first field called ``name`` (in lower case), from an
    index made by :func:`first_values`."""
    value = index.get(name)
    return None if value is None else unfold(value)


def bytes_to_text(value: bytes) -> str:
    """8-bit header bytes as text: UTF-8 (RFC 6532) if valid, else Windows-1252."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace")


_ENCODED_WORD = re.compile(r"=\?([^?*\s]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t]+")


def _decode_word(m: re.Match[str]) -> str:
    charset, kind, text = m.group(1), m.group(2).upper(), m.group(3)
    try:
        if kind == "B":
            data = base64.b64decode(text + "=" * (-len(text) % 4))
        else:
            data = binascii.a2b_qp(text.replace("_", " ").encode("ascii"), header=True)
        return data.decode(charset, "replace")
    except (ValueError, LookupError, binascii.Error):
        return m.group(0)


def decode_text(value: bytes) -> str:
    """A header value as a person reads it: unfolded, encoded words decoded (RFC 2047 §6;
    whitespace between two encoded words is dropped, §6.2)."""
    text = bytes_to_text(unfold(value))
    if "=?" not in text:
        return text
    out: list[str] = []
    last = 0
    prev_end = -1
    for m in _ENCODED_WORD.finditer(text):
        between = text[last : m.start()]
        if not (prev_end == m.start() - len(between) and prev_end >= 0
                and _BETWEEN_WORDS.fullmatch(between)):
            out.append(between)
        out.append(_decode_word(m))
        last = prev_end = m.end()
    out.append(text[last:])
    return "".join(out)


# -- parameters (RFC 2045 §5.1, RFC 2183 §2) -------------------------------------------------

_TOKEN_END = re.compile(rb'[;"()\s]')


def _skip_comment(data: bytes, i: int) -> int:
    depth = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x5C:
            i += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _quoted(data: bytes, i: int) -> tuple[bytes, int]:
    out = bytearray()
    i += 1
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x5C and i + 1 < n:
            out.append(data[i + 1])
            i += 2
            continue
        if c == 0x22:
            return bytes(out), i + 1
        if c not in (0x0D, 0x0A):
            out.append(c)
        i += 1
    return bytes(out), n


def parse_params(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """``type/subtype; a=b; c="d"`` → ``(b"type/subtype", [(b"a", b"b"), (b"c", b"d")])``.

    Parameter names keep their case as written; RFC 2231 extended parameters (``name*``)
    are passed through undecoded, as IMAP servers commonly do.
    """
    data = unfold(value)
    i, n = 0, len(data)
    main = bytearray()
    params: list[tuple[bytes, bytes]] = []
    while i < n and data[i] != 0x3B:
        c = data[i]
        if c == 0x28:
            i = _skip_comment(data, i)
            continue
        if c == 0x22:
            q, i = _quoted(data, i)
            main += q
            continue
        if c not in (0x20, 0x09, 0x0D, 0x0A):
            main.append(c)
        i += 1
    while i < n:
        i += 1  # the ";"
        while i < n and data[i] in b" \t\r\n":
            i += 1
        if i < n and data[i] == 0x28:
            i = _skip_comment(data, i)
            continue
        eq = data.find(b"=", i)
        semi = data.find(b";", i)
        if eq < 0 or (0 <= semi < eq):
            i = semi if semi >= 0 else n
            continue
        name = data[i:eq].strip()
        i = eq + 1
        while i < n and data[i] in b" \t":
            i += 1
        if i < n and data[i] == 0x22:
            val, i = _quoted(data, i)
        else:
            m = _TOKEN_END.search(data, i)
            end = m.start() if m else n
            val = data[i:end]
            i = end
        if name:
            params.append((name, val))
        while i < n and data[i] != 0x3B:
            if data[i] == 0x28:
                i = _skip_comment(data, i)
            else:
                i += 1
    return bytes(main), params


# -- addresses (RFC 5322 §3.4) -----------------------------------------------------------------

#: One ENVELOPE address: (name, adl, mailbox, host); a group start has host ``None`` and
#: the group name as mailbox; a group end is all ``None`` (RFC 3501 §7.4.2).
Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]

_SPECIALS = frozenset(b"<>,:;@")


def _tokens(data: bytes) -> list[tuple[str, bytes]]:
    """Tokens: ('q', quoted), ('c', comment), ('s', special), ('a', atom/dot-atom)."""
    out: list[tuple[str, bytes]] = []
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x22:
            q, i = _quoted(data, i)
            out.append(("q", q))
        elif c == 0x28:
            j = _skip_comment(data, i)
            out.append(("c", data[i + 1 : j - 1]))
            i = j
        elif c in _SPECIALS:
            out.append(("s", bytes([c])))
            i += 1
        else:
            j = i
            while j < n and data[j] not in _SPECIALS and data[j] not in b' \t\r\n"(':
                j += 1
            out.append(("a", data[i:j]))
            i = j
    return out


def _addr_spec(tokens: list[tuple[str, bytes]]) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(adl, mailbox, host) from the tokens inside ``<...>`` or of a bare addr-spec."""
    adl: bytes | None = None
    colon = next((k for k, t in enumerate(tokens) if t == ("s", b":")), None)
    if colon is not None and tokens and tokens[0] == ("s", b"@"):
        adl = b"".join(v for kind, v in tokens[:colon] if kind != "c")
        tokens = tokens[colon + 1 :]
    at = max((k for k, t in enumerate(tokens) if t == ("s", b"@")), default=None)
    words = [(k, kind, v) for k, (kind, v) in enumerate(tokens) if kind != "c"]
    if at is None:
        local = b"".join(v for _, _, v in words)
        return adl, local or None, None
    local = b"".join(v for k, _, v in words if k < at)
    host = b"".join(v for k, _, v in words if k > at)
    return adl, local or None, host or None


def _phrase(tokens: list[tuple[str, bytes]]) -> bytes | None:
    words = [v for kind, v in tokens if kind in ("a", "q")]
    return b" ".join(words) if words else None


def _mailbox(tokens: list[tuple[str, bytes]]) -> Address | None:
    if not tokens:
        return None
    lt = next((k for k, t in enumerate(tokens) if t == ("s", b"<")), None)
    if lt is not None:
        gt = next((k for k in range(lt + 1, len(tokens)) if tokens[k] == ("s", b">")), len(tokens))
        name = _phrase(tokens[:lt])
        adl, local, host = _addr_spec(tokens[lt + 1 : gt])
    else:
        adl, local, host = _addr_spec(tokens)
        comments = [v for kind, v in tokens if kind == "c"]
        name = comments[-1].strip() if comments and comments[-1].strip() else None
    if local is None and host is None and name is None:
        return None
    return (name, adl, local or b"MISSING_MAILBOX", host or b"MISSING_DOMAIN")


def parse_addresses(value: bytes) -> list[Address]:
    """An address-list header value as ENVELOPE addresses (groups included)."""
    tokens = _tokens(unfold(value))
    out: list[Address] = []
    current: list[tuple[str, bytes]] = []
    in_group = False
    for tok in tokens:
        if tok == ("s", b":") and not in_group and not any(t == ("s", b"<") for t in current):
            out.append((None, None, _phrase(current) or b"", None))
            in_group = True
            current = []
        elif tok == ("s", b",") or (tok == ("s", b";") and in_group):
            addr = _mailbox(current)
            if addr is not None:
                out.append(addr)
            current = []
            if tok == ("s", b";"):
                out.append((None, None, None, None))
                in_group = False
        else:
            current.append(tok)
    addr = _mailbox(current)
    if addr is not None:
        out.append(addr)
    if in_group:
        out.append((None, None, None, None))
    return out
