"""Responses as bytes (RFC 3501 §7 and §9, RFC 9051 §7 and §9).

Values map to IMAP syntax as follows:

* ``None`` → ``NIL``; ``int`` → a number;
* ``bytes`` / ``str`` → a string: quoted when it is short 7-bit text without CR, LF or NUL,
  a literal otherwise (8-bit text is quoted only in UTF-8 mode, RFC 9051 §4.3 / RFC 6855);
* :class:`Atom` → verbatim token (flags, keywords, ``BODY[1]``);
* :class:`Literal` / :class:`Literal8` → always a literal (``~{n}`` for binary, RFC 3516);
* ``list`` / ``tuple`` → a parenthesised list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mailstore.imap.lexer import ASTRING_CHARS

#: Longer strings are sent as literals even when they could be quoted.
MAX_QUOTED = 1024


@dataclass(frozen=True, slots=True)
class Atom:
    """Bytes sent as they are (an atom, a flag, a pre-rendered structure)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class Literal:
    value: bytes


@dataclass(frozen=True, slots=True)
class Literal8:
    """A binary literal ``~{n}`` (RFC 3516 §4.2), for content that contains NUL."""

    value: bytes


Value = (
    None | int | bytes | str | Atom | Literal | Literal8 | list["Value"] | tuple["Value", ...]
)

_QUOTE_UNSAFE = frozenset(b"\r\n\x00")


def _quotable(data: bytes, utf8: bool) -> bool:
    if len(data) > MAX_QUOTED:
        return False
    if b"\r" in data or b"\n" in data or b"\x00" in data:  # _QUOTE_UNSAFE, at C speed
        return False
    if data.isascii():
        return True
    if not utf8:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def string(data: bytes, *, utf8: bool = False) -> bytes:
    """A ``string`` (RFC 3501 §4.3): quoted if possible, else a literal."""
    if _quotable(data, utf8):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n%b" % (len(data), data)


def astring(data: bytes, *, utf8: bool = False) -> bytes:
    """An ``astring``: an atom when every byte is an ASTRING-CHAR, else a string."""
    if data and all(b in ASTRING_CHARS for b in data):
        return data
    return string(data, utf8=utf8)


def render(value: Value, *, utf8: bool = False) -> bytes:
    out = bytearray()
    _render_into(out, value, utf8)
    return bytes(out)


def _render_into(out: bytearray, value: Value, utf8: bool) -> None:
    if value is None:
        out += b"NIL"
    elif isinstance(value, bool):  # bool is an int: refuse the ambiguity
        raise TypeError("a bool is not an IMAP value")
    elif isinstance(value, int):
        out += str(value).encode()
    elif isinstance(value, bytes):
        out += string(value, utf8=utf8)
    elif isinstance(value, str):
        out += string(value.encode("utf-8"), utf8=utf8)
    elif isinstance(value, Atom):
        out += value.value
    elif isinstance(value, Literal):
        out += b"{%d}\r\n" % len(value.value)
        out += value.value
    elif isinstance(value, Literal8):
        out += b"~{%d}\r\n" % len(value.value)
        out += value.value
    else:
        out += b"("
        for i, item in enumerate(value):
            if i:
                out += b" "
            _render_into(out, item, utf8)
        out += b")"


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + b" ".join(f.encode("ascii") for f in flags) + b")"


def _text(text: str) -> bytes:
    # resp-text must be 7-bit and single-line (RFC 3501 §9 text = 1*TEXT-CHAR).
    clean = text.replace("\r", " ").replace("\n", " ")
    return clean.encode("ascii", "replace")


def tagged(tag: bytes, status: bytes, text: str, code: bytes | None = None) -> bytes:
    """``tag OK|NO|BAD [code] text`` (RFC 3501 §7.1)."""
    code_part = b"[" + code + b"] " if code else b""
    return tag + b" " + status + b" " + code_part + _text(text) + b"\r\n"


def untagged_status(status: bytes, text: str, code: bytes | None = None) -> bytes:
    """``* OK|NO|BAD|BYE|PREAUTH [code] text``."""
    return tagged(b"*", status, text, code)


def untagged(data: bytes) -> bytes:
    """``* <data>`` for server data responses (CAPABILITY, LIST, FETCH...)."""
    return b"* " + data + b"\r\n"


def continuation(text: str = "") -> bytes:
    """``+ text`` (RFC 3501 §7.5); with base64 data for SASL challenges."""
    return b"+ " + _text(text) + b"\r\n" if text else b"+ \r\n"


def fetch_response(seq: int, items: list[bytes]) -> bytes:
    """``* n FETCH (name value ...)`` from already rendered ``name value`` items."""
    return b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"
