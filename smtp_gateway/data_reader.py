"""The DATA body, sans-IO: bytes in, the message (or the refusal) out.

RFC 5321 §4.1.1.4 and §4.5.2: the mail data ends with a line holding a single period,
``CRLF . CRLF``; a line that begins with a period has that period removed
("transparency"). Only that exact sequence ends the data: a bare ``LF . LF``, ``CRLF . LF``
or ``LF . CRLF`` never does (SMTP smuggling, CVE-2023-51764/51765/51766), as in
aiosmtpd ≥ 1.4.5 whose line reader this replaces.

aiosmtpd reads the data one line at a time (a coroutine step and several Python calls per
line); :class:`DataAssembler` takes whatever the socket delivered and searches it with C
routines, so a 4 KiB message costs a few calls instead of a few hundred.

Limits, checked as the data arrives and answered after the final dot (RFC 5321 §4.2.5,
as aiosmtpd does): a line longer than :data:`LINE_LIMIT` octets with its CRLF
(RFC 5321 §4.5.3.1.6) is ``500``, more data than the size limit is ``552``; the first
line that breaks a limit decides (the size counted at the end of each line, so a long line
that also crosses the size limit is ``552``), and from then on the data is discarded
(memory stays bounded). The size is the message's as RFC 1870 §3 defines it: neither the
doubled periods of transparency nor any octet of the end marker counts, so a message of
exactly the size limit is accepted however the network cut it into reads.
A "line" here is what lies between two line breaks, CR and LF alike: a bare CR or LF is
refused or normalised later (:func:`smtp_gateway.smtp_edge.check_data`).
"""

from __future__ import annotations

#: 1000 octets with the CRLF (RFC 5321 §4.5.3.1.6), plus aiosmtpd's one octet of slack.
LINE_LIMIT = 1001

END = b"\r\n.\r\n"

#: A line that begins with a period: the period is transparency, not data (RFC 5321 §4.5.2).
_STUFFED = b"\r\n."

LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH_DATA = "552 Error: Too much mail data"


class DataAssembler:
    """Collects one DATA body; :meth:`feed` until it returns True, then :meth:`result`."""

    def __init__(self, max_size: int, line_limit: int = LINE_LIMIT) -> None:
        self.max_size = max_size
        #: A run of this many octets without a line break is a line over the limit.
        self._max_run = line_limit - 1
        #: Length of the line still open at the end of what was fed so far.
        self._open_line = 0
        # The data is kept behind a virtual CRLF so that an empty message (".\r\n" at
        # once) is found by the same search as the end of any other.
        self._buf = bytearray(b"\r\n")
        self._scan = 0
        self._refusal: str | None = None
        #: Where in ``_buf`` the first line over the limit was seen, until that line ends.
        self._long_at: int | None = None
        #: Lines that begin with a period (:data:`_STUFFED`) whose period is at a position
        #: before :attr:`_dots_upto` in ``_buf``: octets that are not the message's.
        self._dots = 0
        self._dots_upto = 0
        self.done = False
        #: What followed the final dot (pipelined commands, RFC 2920 §3.1).
        self.leftover = b""
        self._body = b""

    def feed(self, data: bytes) -> bool:
        """Add received octets; True once the end of the data has been seen."""
        if self.done:
            raise RuntimeError("DATA already complete")
        buf = self._buf
        before = len(buf)
        buf += data
        end = buf.find(END, self._scan)
        if self._refusal is None:
            if end >= 0:
                size_end = end + 2
            elif buf.endswith(b"\r\n.\r"):
                size_end = len(buf) - 1  # this CR may begin the end marker's CRLF
            else:
                size_end = len(buf)  # a final "\r\n." is a period the size never counts
            self._check_limits(buf, before, end + 2 if end >= 0 else len(buf), size_end)
        if end >= 0:
            self.done = True
            self.leftover = bytes(buf[end + len(END) :])
            if self._refusal is None:
                self._body = _unstuff(bytes(buf[2 : end + 2]))
            self._buf = bytearray()
            return True
        if self._refusal is not None:
            # Discard the data, keeping only what may hold the start of the end marker.
            del buf[: -(len(END) - 1)]
        self._scan = max(0, len(buf) - (len(END) - 1))
        return False

    def _dots_before(self, buf: bytearray, pos: int) -> int:
        """How many transparency periods lie before ``pos`` in ``buf`` (a period at
        ``i`` when ``buf[i - 2 : i + 1]`` is CR LF period, the virtual CRLF included)."""
        upto = self._dots_upto
        if pos >= upto:
            return self._dots + buf.count(_STUFFED, max(0, upto - 2), pos)
        return self._dots - buf.count(_STUFFED, max(0, pos - 2), upto)

    def _size_at(self, buf: bytearray, pos: int) -> int:
        """The message size (RFC 1870 §3) of ``buf[2:pos]``: stuffed periods excluded."""
        return pos - 2 - self._dots_before(buf, pos)

    def _check_limits(self, buf: bytearray, start: int, data_end: int, size_end: int) -> None:
        """Decide the refusal, if any, once ``buf[start:data_end]`` (new data up to the
        last line's CRLF) is known; ``buf[2:size_end]`` is data however the rest goes on.
        As the line-by-line reader does, the first line that breaks a limit decides: the
        size is counted at the end of each line, and a line over the length limit is
        refused for its length only if the data is still within the size limit where
        that line ends."""
        over_size = self.max_size and self._size_at(buf, size_end) > self.max_size
        if self._long_at is None and data_end > start:
            self._long_at = self._first_long_run(buf, start, data_end)
        if self._long_at is not None:
            line_end = buf.find(b"\r\n", self._long_at, data_end)
            if line_end >= 0:  # the long line ended: was the data within the limit there?
                within = (not self.max_size
                          or self._size_at(buf, line_end + 2) <= self.max_size)
                self._refusal = LINE_TOO_LONG if within else TOO_MUCH_DATA
            elif over_size:  # it ends past the size limit
                self._refusal = TOO_MUCH_DATA
        elif over_size:
            self._refusal = TOO_MUCH_DATA
        # Remember the periods counted so far: the next block counts only its own.
        self._dots = self._dots_before(buf, size_end)
        self._dots_upto = size_end

    def _first_long_run(self, buf: bytearray, start: int, end: int) -> int | None:
        """A position inside the first run of :attr:`_max_run` octets without CR or LF in
        ``buf[start:end]``, the line left open by the previous block included; None if
        there is none (C-level splits: no per-position regex scan)."""
        parts = bytes(buf[start:end]).replace(b"\r", b"\n").split(b"\n")
        first = self._open_line + len(parts[0])
        self._open_line = first if len(parts) == 1 else len(parts[-1])
        if first >= self._max_run:
            return start  # the open line, continued by this block
        if len(parts) == 1 or max(map(len, parts)) < self._max_run:
            return None
        i = next(i for i, part in enumerate(parts) if len(part) >= self._max_run)
        return start + sum(map(len, parts[:i])) + i  # the run's first octet

    def result(self) -> bytes | str:
        """The message (dot-unstuffed, CRLF line ends as received), or the reply text."""
        if not self.done:
            raise RuntimeError("DATA not complete")
        return self._refusal if self._refusal is not None else self._body


def _unstuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: remove the first period of every line that starts with one."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")
