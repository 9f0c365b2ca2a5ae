"""DATA assembly (RFC 5321 §4.1.1.4, §4.5.2) against a line-by-line reference, in any
chunking: the end marker, transparency, limits, smuggling attempts, pipelined leftovers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_gateway.data_reader import LINE_TOO_LONG, TOO_MUCH_DATA, DataAssembler


def reference(stream: bytes, max_size: int, line_limit: int = 1001):
    """aiosmtpd's algorithm: CRLF-delimited lines until a line that is exactly ".\\r\\n";
    the size counted as RFC 1870 §3 defines it (a line's transparency period is not data)."""
    pos, lines, size, refusal = 0, [], 0, None
    long_run = re.compile(rb"[^\r\n]{%d}" % (line_limit - 1))
    while True:
        nl = stream.find(b"\r\n", pos)
        if nl < 0:
            return None  # not complete
        line = stream[pos : nl + 2]
        pos = nl + 2
        if line == b".\r\n":
            break
        size += len(line) - line.startswith(b".")
        if refusal is None and max_size and size > max_size:
            refusal = TOO_MUCH_DATA
        if refusal is None and long_run.search(line):
            refusal = LINE_TOO_LONG
        lines.append(line[1:] if line.startswith(b".") else line)
    return (refusal if refusal else b"".join(lines)), stream[pos:]


def assemble(chunks: list[bytes], max_size: int):
    a = DataAssembler(max_size)
    for i, chunk in enumerate(chunks):
        if a.feed(chunk):
            rest = b"".join(chunks[i + 1 :])
            return a.result(), a.leftover + rest
    return None


pieces = st.sampled_from([
    b"\r\n", b"\n", b"\r", b".", b"..", b"x", b"hello world", b"\r\n.\r\n", b"\n.\n",
    b"\r\n.\n", b"\n.\r\n", b".\r\n", b"y" * 600, b"y" * 1000, b"MAIL FROM:<a@b>\r\n",
])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], int]:
    data = b"".join(draw(st.lists(pieces, max_size=30)))
    data += draw(st.sampled_from([b"\r\n.\r\n", b"\r\n.\r\nQUIT\r\n", b""]))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    chunks, prev = [], 0
    for c in [*cuts, len(data)]:
        chunks.append(data[prev:c])
        prev = c
    return [c for c in chunks if c] or [b""], draw(st.sampled_from([0, 50, 1500, 2000]))


@settings(max_examples=600, deadline=None)
@given(streams())
def test_same_as_the_line_by_line_reference_in_any_chunking(case) -> None:
    chunks, max_size = case
    assert assemble(chunks, max_size) == reference(b"".join(chunks), max_size)


def test_end_marker_transparency_and_leftover() -> None:
    a = DataAssembler(0)
    assert not a.feed(b"Subject: x\r\n\r\n..leading dot\r\n.")
    assert not a.feed(b"\r")
    assert a.feed(b"\nRSET\r\n")
    assert a.result() == b"Subject: x\r\n\r\n.leading dot\r\n"
    assert a.leftover == b"RSET\r\n"
    empty = DataAssembler(0)
    assert empty.feed(b".\r\n") and empty.result() == b""


@pytest.mark.parametrize("marker", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r"])
def test_smuggled_markers_never_end_the_data(marker: bytes) -> None:
    a = DataAssembler(0)
    assert not a.feed(b"Subject: a\r\n\r\nbody" + marker + b"MAIL FROM:<evil@x>\r\n")
    assert a.feed(b"\r\n.\r\n")
    assert b"MAIL FROM:<evil@x>" in a.result()


def test_limits_discard_and_answer_after_the_dot() -> None:
    big = DataAssembler(100)
    for _ in range(1000):
        assert not big.feed(b"a" * 80 + b"\r\n")
    assert len(big._buf) < 10  # nothing kept while discarding
    assert big.feed(b".\r\n") and big.result() == TOO_MUCH_DATA
    long = DataAssembler(0)
    assert not long.feed(b"a" * 600)
    assert not long.feed(b"a" * 600 + b"\r\n")  # one line of 1,200 octets over two reads
    assert long.feed(b".\r\n") and long.result() == LINE_TOO_LONG
    ok = DataAssembler(0)
    assert ok.feed(b"a" * 998 + b"\r\n.\r\n") and ok.result() == b"a" * 998 + b"\r\n"


LONG = b"y" * 1200 + b"\r\n"  # over the 1,000-octet line limit


@pytest.mark.parametrize(
    ("data", "max_size", "refusal"),
    [
        # the long line ends within the size limit; a later line crosses it: 500
        (LONG + b"y" * 900 + b"\r\n", 2000, LINE_TOO_LONG),
        # the long line itself crosses the size limit: the size is counted first, 552
        (b"y" * 900 + b"\r\n" + LONG, 2000, TOO_MUCH_DATA),
        # a short line crosses the size limit before the long line: 552
        (b"y" * 900 + b"\r\n" + b"y" * 900 + b"\r\n" + LONG, 1000, TOO_MUCH_DATA),
        # a long line then nothing over the size: 500
        (LONG, 2000, LINE_TOO_LONG),
    ],
    ids=["long-then-size", "long-crossing-size", "size-then-long", "long-only"],
)
def test_the_first_line_that_breaks_a_limit_decides(
    data: bytes, max_size: int, refusal: str
) -> None:
    """In every chunking (one byte at a time included), as the line-by-line reader."""
    stream = data + b".\r\n"
    assert reference(stream, max_size) == (refusal, b"")
    for cut in range(0, len(stream), 97):
        assert assemble([stream[:cut], stream[cut:]], max_size) == (refusal, b"")
    assert assemble([stream[i : i + 1] for i in range(len(stream))], max_size) == (refusal, b"")


def test_a_message_of_exactly_the_size_limit_is_accepted_in_any_chunking() -> None:
    """RFC 1870 §3: the end marker is not part of the message size, even when a read ends
    inside it (a TCP segment or TLS record boundary after the final ".")."""
    message = b"Subject: x\r\n\r\n" + b"a" * 84 + b"\r\n"
    stream = message + b".\r\n"
    for cut in range(len(stream) + 1):
        assert assemble([stream[:cut], stream[cut:]], len(message)) == (message, b"")
        assert assemble([stream[:cut], stream[cut:]], len(message) - 1) == (TOO_MUCH_DATA, b"")


def test_transparency_periods_are_not_counted_in_the_size() -> None:
    """RFC 1870 §3: "not ... doubled quoting dots": the size is the unstuffed message's."""
    message = b"Subject: x\r\n\r\n" + b".line\r\n" * 10
    stuffed = b"Subject: x\r\n\r\n" + b"..line\r\n" * 10
    stream = stuffed + b".\r\n"
    for cut in range(len(stream) + 1):
        assert assemble([stream[:cut], stream[cut:]], len(message)) == (message, b"")
        assert assemble([stream[:cut], stream[cut:]], len(message) - 1) == (TOO_MUCH_DATA, b"")
    # A period at the very start of the data is transparency too.
    assert assemble([b"..x\r\n.\r\n"], 4) == (b".x\r\n", b"")
    assert assemble([b"..x\r\n.\r\n"], 3) == (TOO_MUCH_DATA, b"")
