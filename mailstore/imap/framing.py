"""Framing: the client's byte stream cut into complete commands (sans-IO).

RFC 3501 §2.2 and §4.3: a command is a line ending in CRLF, except that a line ending in a
literal marker ``{n}`` (synchronising: the server first answers ``+``), ``{n+}``
(non-synchronising, RFC 7888 §3) or ``~{n}`` (binary, RFC 3516 §4.2) continues after ``n``
bytes of literal data. The framer hands out each command's bytes with its literals inline,
so :mod:`.parser` sees one contiguous buffer.

Everything is bounded (STYLE.md: Postfix habit): a line, a literal, a whole command. A line
that is too long ends the connection (we cannot tell where the command ends); a literal
that is too big is refused before it is sent when it is synchronising, and read and thrown
away when it is not (RFC 7888 §4), so the connection stays usable.

The framer is pull-based: :meth:`Framer.next_event` returns one event at a time so that the
server can switch to line mode (AUTHENTICATE responses, IDLE's ``DONE``) between commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailstore.imap.parser import peek_tag_and_name

_LITERAL_END = re.compile(rb"(~?)\{(\d{1,10})(\+?)\}$")


@dataclass(frozen=True, slots=True)
class FramingLimits:
    #: One line of a command (between literals), CRLF excluded.
    max_line: int = 64 * 1024
    #: One literal in any command but APPEND (a password, a search string...).
    max_literal: int = 1024 * 1024
    #: The message literal of APPEND (the message size limit).
    max_append: int = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CommandBytes:
    """A complete command, CRLF stripped, literals inline as ``{n}\\r\\n<data>``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """The client announced a synchronising literal: send ``+ ...`` (RFC 3501 §7.5)."""


@dataclass(frozen=True, slots=True)
class RawLine:
    """A line read in line mode (a SASL response, IDLE's DONE)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FramingError:
    """A command refused while framing. ``fatal``: say BYE and close the connection."""

    tag: bytes | None
    status: bytes
    code: bytes | None
    text: str
    fatal: bool = False


Event = CommandBytes | NeedContinuation | RawLine | FramingError


class Framer:
    __slots__ = (
        "_buf", "_cmd", "_discard", "_line_mode", "_literal_left", "_pos", "_reject", "limits",
    )

    def __init__(self, limits: FramingLimits | None = None) -> None:
        self.limits = limits or FramingLimits()
        self._buf = bytearray()
        self._pos = 0
        self._cmd = bytearray()
        self._literal_left = 0
        self._discard = False
        self._reject: FramingError | None = None
        self._line_mode = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buf) - self._pos

    def in_command(self) -> bool:
        """Whether part of a command has been read (the client is mid-command)."""
        return bool(self._cmd) or self._literal_left > 0

    def expect_line(self) -> None:
        """Make the next event a :class:`RawLine` (RFC 3501 §6.2.2, RFC 2177 §3)."""
        self._line_mode = True

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def _error(self, status: bytes, code: bytes | None, text: str, *, fatal: bool = False,
               head: bytes = b"") -> FramingError:
        tag, _ = peek_tag_and_name(head or bytes(self._cmd))
        return FramingError(tag, status, code, text, fatal)

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more bytes are needed."""
        buf = self._buf
        while True:
            if self._literal_left:
                avail = len(buf) - self._pos
                if not avail:
                    self._compact()
                    return None
                n = min(avail, self._literal_left)
                if not self._discard:
                    self._cmd += buf[self._pos : self._pos + n]
                self._pos += n
                self._literal_left -= n
                continue
            lf = buf.find(b"\n", self._pos)
            if lf < 0:
                if len(buf) - self._pos > self.limits.max_line:
                    head = bytes(buf[self._pos : self._pos + 200])
                    self._buf = bytearray()
                    self._pos = 0
                    return self._error(
                        b"BAD", None, "line too long", fatal=True, head=bytes(self._cmd) or head
                    )
                self._compact()
                return None
            end = lf - 1 if lf > self._pos and buf[lf - 1] == 0x0D else lf
            line = bytes(buf[self._pos : end])
            self._pos = lf + 1
            if len(line) > self.limits.max_line:
                self._cmd.clear()
                return self._error(b"BAD", None, "line too long", fatal=True, head=line[:200])
            if self._line_mode:
                self._line_mode = False
                return RawLine(line)
            m = _LITERAL_END.search(line)
            if m is None:
                if self._discard:
                    self._discard = False
                    reject, self._reject = self._reject, None
                    assert reject is not None
                    return reject
                if not self._cmd and not line:
                    continue  # tolerate empty lines between commands
                data = bytes(self._cmd) + line
                self._cmd.clear()
                return CommandBytes(data)
            event = self._literal_marker(line, m)
            if event is not None:
                return event

    def _literal_marker(self, line: bytes, m: re.Match[bytes]) -> Event | None:
        size = int(m.group(2))
        sync = not m.group(3)
        head = bytes(self._cmd[:200]) if self._cmd else line[:200]
        _, name = peek_tag_and_name(head)
        append = name == "APPEND"
        limit = self.limits.max_append if append else self.limits.max_literal
        too_big = size > limit or len(self._cmd) + len(line) + size > limit + self.limits.max_line
        if self._discard:
            if sync:  # the client waits for "+": refuse now, it abandons the command
                self._cmd.clear()
                self._discard = False
                reject, self._reject = self._reject, None
                return reject
            self._literal_left = size
            return None
        if too_big:
            if append:
                err = self._error(
                    b"NO", b"TOOBIG", f"message too large (limit {limit} octets)", head=head
                )
            else:
                err = self._error(b"BAD", None, f"literal too large (limit {limit} octets)",
                                  head=head)
            if sync:
                self._cmd.clear()
                return err
            self._cmd.clear()
            self._discard = True
            self._reject = err
            self._literal_left = size
            return None
        self._cmd += line
        self._cmd += b"\r\n"
        self._literal_left = size
        if sync:
            return NeedContinuation()
        return None
