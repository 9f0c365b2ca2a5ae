"""Tokens of IMAP commands, read from one complete command's bytes (RFC 3501 §9).

A :class:`Cursor` walks the bytes of a command as framed by :mod:`.framing` (literal data
inline after its ``{n}\\r\\n`` marker). Every reader raises :class:`ParseError` with a short
reason that the server sends back in the ``BAD`` response.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from mailstore.imap.errors import ParseError

# RFC 3501 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
# quoted-specials / resp-specials.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
ATOM_CHARS = frozenset(range(0x01, 0x80)) - _ATOM_SPECIALS
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
LIST_CHARS = ATOM_CHARS | frozenset(b"%*]")

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_INDEX = {m.lower().encode(): i + 1 for i, m in enumerate(MONTHS)}

MAX_NUMBER = 2**32 - 1  # RFC 3501 §9 number
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 §9 number64, RFC 7162 §7 mod-sequence-value

_LITERAL_RE = re.compile(rb"(~?)\{(\d{1,10})(\+?)\}\r\n")
_DATE_TIME_RE = re.compile(
    rb'"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"'
)


class Cursor:
    """A position in a command; methods consume tokens or raise :class:`ParseError`."""

    __slots__ = ("data", "pos", "tag")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.tag: bytes | None = None

    # -- basics --------------------------------------------------------------------------

    def error(self, reason: str) -> ParseError:
        return ParseError(reason, tag=self.tag)

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int:
        """The next byte, or -1 at the end."""
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def peek_ci(self, word: bytes) -> bool:
        """Whether the next bytes are ``word`` (ASCII case-insensitive)."""
        return self.data[self.pos : self.pos + len(word)].upper() == word.upper()

    def take(self, word: bytes) -> bool:
        """Consume ``word`` (case-insensitive) if it is next."""
        if self.peek_ci(word):
            self.pos += len(word)
            return True
        return False

    def expect(self, word: bytes, what: str | None = None) -> None:
        if not self.take(word):
            raise self.error(f"expected {what or word.decode()}")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.error("expected a space" if not self.at_end() else "missing argument")
        self.pos += 1

    def end(self) -> None:
        if not self.at_end():
            raise self.error("unexpected characters at the end of the command")

    # -- atoms and strings -----------------------------------------------------------------

    def _run(self, chars: frozenset[int]) -> bytes:
        start = self.pos
        data, n = self.data, len(self.data)
        i = start
        while i < n and data[i] in chars:
            i += 1
        self.pos = i
        return data[start:i]

    def atom(self, what: str = "an atom") -> bytes:
        value = self._run(ATOM_CHARS)
        if not value:
            raise self.error(f"expected {what}")
        return value

    def tag_token(self) -> bytes:
        value = self._run(TAG_CHARS)
        if not value:
            raise self.error("missing or invalid tag")
        self.tag = value
        return value

    def quoted(self) -> bytes:
        """A quoted string (RFC 3501 §4.3); 8-bit bytes are tolerated (RFC 9051 UTF-8)."""
        data = self.data
        if self.peek() != 0x22:
            raise self.error("expected a quoted string")
        i = self.pos + 1
        out = bytearray()
        n = len(data)
        while i < n:
            b = data[i]
            if b == 0x22:
                self.pos = i + 1
                return bytes(out)
            if b == 0x5C:
                if i + 1 < n and data[i + 1] in (0x22, 0x5C):
                    out.append(data[i + 1])
                    i += 2
                    continue
                raise self.error("invalid escape in a quoted string")
            if b in (0x0D, 0x0A, 0x00):
                raise self.error("CR, LF or NUL in a quoted string")
            out.append(b)
            i += 1
        raise self.error("unterminated quoted string")

    def literal(self, *, binary_ok: bool = False) -> bytes:
        """A literal ``{n}`` / ``{n+}`` (RFC 7888) or, where allowed, ``~{n}`` (RFC 3516)."""
        m = _LITERAL_RE.match(self.data, self.pos)
        if m is None:
            raise self.error("expected a literal")
        if m.group(1) and not binary_ok:
            raise self.error("a binary literal is not allowed here")
        size = int(m.group(2))
        start = m.end()
        if start + size > len(self.data):
            raise self.error("literal shorter than announced")
        value = self.data[start : start + size]
        if not m.group(1) and b"\x00" in value:
            raise self.error("NUL in a literal (use a binary literal)")
        self.pos = start + size
        return value

    def is_binary_literal(self) -> bool:
        return self.peek() == 0x7E

    def string(self) -> bytes:
        b = self.peek()
        if b == 0x22:
            return self.quoted()
        if b == 0x7B:
            return self.literal()
        raise self.error("expected a string")

    def astring(self, what: str = "a string") -> bytes:
        b = self.peek()
        if b == 0x22:
            return self.quoted()
        if b == 0x7B:
            return self.literal()
        value = self._run(ASTRING_CHARS)
        if not value:
            raise self.error(f"expected {what}")
        return value

    def nstring(self) -> bytes | None:
        if self.peek_ci(b"NIL") and (
            self.pos + 3 >= len(self.data) or self.data[self.pos + 3] not in ATOM_CHARS
        ):
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        """``list-mailbox = 1*list-char / string`` (RFC 3501 §9)."""
        b = self.peek()
        if b in (0x22, 0x7B):
            return self.string()
        value = self._run(LIST_CHARS)
        if not value:
            raise self.error("expected a mailbox pattern")
        return value

    # -- numbers -----------------------------------------------------------------------------

    def number(self, *, maximum: int = MAX_NUMBER, what: str = "a number") -> int:
        start = self.pos
        data, n = self.data, len(self.data)
        i = start
        while i < n and 0x30 <= data[i] <= 0x39:
            i += 1
        if i == start:
            raise self.error(f"expected {what}")
        if i - start > 20:
            raise self.error(f"{what} is too large")
        value = int(data[start:i])
        if value > maximum:
            raise self.error(f"{what} is too large")
        self.pos = i
        return value

    def nz_number(self, *, maximum: int = MAX_NUMBER, what: str = "a non-zero number") -> int:
        value = self.number(maximum=maximum, what=what)
        if value == 0:
            raise self.error(f"expected {what}")
        return value

    # -- flags -------------------------------------------------------------------------------

    def flag(self) -> str:
        """``flag = "\\" atom / keyword`` (RFC 3501 §9); system flags are case-normalised."""
        if self.peek() == 0x5C:
            self.pos += 1
            name = self.atom("a flag name")
            return normalise_system_flag("\\" + name.decode("ascii"))
        return self.atom("a flag").decode("ascii")

    def flag_list(self) -> list[str]:
        self.expect(b"(")
        flags: list[str] = []
        if self.take(b")"):
            return flags
        while True:
            flags.append(self.flag())
            if self.take(b")"):
                return flags
            self.sp()

    def flags(self) -> list[str]:
        """A parenthesised flag list, or (RFC 3501 §6.4.6 STORE) flags separated by spaces."""
        if self.peek() == 0x28:
            return self.flag_list()
        flags = [self.flag()]
        while self.peek() == 0x20 and self.pos + 1 < len(self.data):
            self.sp()
            flags.append(self.flag())
        return flags

    # -- dates -------------------------------------------------------------------------------

    def search_date(self) -> date:
        """``date = date-text / DQUOTE date-text DQUOTE`` with ``d-Mon-yyyy``."""
        quoted = self.take(b'"')
        day = self.number(what="a day")
        self.expect(b"-", "a date like 1-Feb-2024")
        mon = _MONTH_INDEX.get(self.data[self.pos : self.pos + 3].lower())
        if mon is None:
            raise self.error("unknown month (expected Jan..Dec)")
        self.pos += 3
        self.expect(b"-", "a date like 1-Feb-2024")
        year = self.number(what="a year")
        if quoted:
            self.expect(b'"')
        try:
            return date(year, mon, day)
        except ValueError:
            raise self.error("invalid date") from None

    def date_time(self) -> datetime:
        """``date-time`` of APPEND (RFC 3501 §9): ``"dd-Mon-yyyy hh:mm:ss +zzzz"``."""
        m = _DATE_TIME_RE.match(self.data, self.pos)
        if m is None:
            raise self.error('expected a date-time like "01-Feb-2024 10:00:00 +0100"')
        mon = _MONTH_INDEX.get(m.group(2).lower())
        if mon is None:
            raise self.error("unknown month (expected Jan..Dec)")
        offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
        if m.group(7) == b"-":
            offset = -offset
        try:
            value = datetime(
                int(m.group(3)), mon, int(m.group(1)),
                int(m.group(4)), int(m.group(5)), int(m.group(6)),
                tzinfo=timezone(offset),
            )
        except ValueError:
            raise self.error("invalid date-time") from None
        self.pos = m.end()
        return value


SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
_SYSTEM_BY_UPPER = {f.upper(): f for f in SYSTEM_FLAGS}


def normalise_system_flag(flag: str) -> str:
    """``\\SEEN`` → ``\\Seen``; other backslash flags (extensions) keep their spelling."""
    return _SYSTEM_BY_UPPER.get(flag.upper(), flag)
