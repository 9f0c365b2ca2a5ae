"""Framing: bytes pushed in, events out — literals, limits, line mode."""

from __future__ import annotations

from mailstore.imap.framing import (
    CommandBytes,
    Framer,
    FramingError,
    FramingLimits,
    NeedContinuation,
    RawLine,
)


def drain(fr: Framer) -> list[object]:
    out: list[object] = []
    while (ev := fr.next_event()) is not None:
        out.append(ev)
    return out


def test_commands_split_on_crlf_and_bare_lf_byte_by_byte() -> None:
    fr = Framer()
    events: list[object] = []
    for b in b"a NOOP\r\nb CAPABILITY\nc LOGOUT\r\n":
        fr.feed(bytes([b]))
        events += drain(fr)
    assert events == [CommandBytes(b"a NOOP"), CommandBytes(b"b CAPABILITY"),
                      CommandBytes(b"c LOGOUT")]


def test_synchronising_literal_asks_for_continuation() -> None:
    fr = Framer()
    fr.feed(b"a LOGIN {4}\r\n")
    assert drain(fr) == [NeedContinuation()]
    fr.feed(b"us")
    assert drain(fr) == []
    fr.feed(b"er {2+}\r\npw\r\n")
    assert drain(fr) == [CommandBytes(b"a LOGIN {4}\r\nuser {2+}\r\npw")]


def test_literal_containing_crlf_and_braces() -> None:
    fr = Framer()
    fr.feed(b"a APPEND INBOX {11+}\r\nx\r\n{3}\r\nabc\r\n")
    assert drain(fr) == [CommandBytes(b"a APPEND INBOX {11+}\r\nx\r\n{3}\r\nabc")]


def test_binary_literal_and_bare_lf_before_literal() -> None:
    fr = Framer()
    fr.feed(b"a APPEND INBOX ~{3}\n")
    assert drain(fr) == [NeedContinuation()]
    fr.feed(b"\x00\x01\x02\r\n")
    assert drain(fr) == [CommandBytes(b"a APPEND INBOX ~{3}\r\n\x00\x01\x02")]


def test_append_too_big_synchronising_is_refused_before_data() -> None:
    fr = Framer(FramingLimits(max_append=100))
    fr.feed(b"A1 APPEND INBOX {101}\r\nA2 NOOP\r\n")
    assert drain(fr) == [
        FramingError(b"A1", b"NO", b"TOOBIG", "message too large (limit 100 octets)"),
        CommandBytes(b"A2 NOOP"),
    ]


def test_non_synchronising_literal_too_big_is_skipped_and_connection_survives() -> None:
    fr = Framer(FramingLimits(max_literal=10, max_append=1000))
    fr.feed(b"A1 LOGIN {20+}\r\n" + b"x" * 20 + b" {3+}\r\npwd\r\nA2 NOOP\r\n")
    assert drain(fr) == [
        FramingError(b"A1", b"BAD", None, "literal too large (limit 10 octets)"),
        CommandBytes(b"A2 NOOP"),
    ]
    fr.feed(b"A3 APPEND INBOX {1001+}\r\n" + b"y" * 1001 + b"\r\nA4 NOOP\r\n")
    events = drain(fr)
    assert events[0] == FramingError(
        b"A3", b"NO", b"TOOBIG", "message too large (limit 1000 octets)"
    )
    assert events[1:] == [CommandBytes(b"A4 NOOP")]
    assert fr.buffered() == 0


def test_overlong_line_is_fatal() -> None:
    fr = Framer(FramingLimits(max_line=50))
    fr.feed(b"A1 LOGIN " + b"x" * 100)
    (event,) = drain(fr)
    assert isinstance(event, FramingError)
    assert event.fatal and event.status == b"BAD" and event.tag == b"A1"


def test_line_mode_for_sasl_and_idle() -> None:
    fr = Framer()
    fr.feed(b"a AUTHENTICATE PLAIN\r\nAGEAYg==\r\nb NOOP\r\n")
    assert fr.next_event() == CommandBytes(b"a AUTHENTICATE PLAIN")
    fr.expect_line()
    assert fr.next_event() == RawLine(b"AGEAYg==")
    assert fr.next_event() == CommandBytes(b"b NOOP")
    assert fr.next_event() is None


def test_empty_lines_between_commands_are_ignored() -> None:
    fr = Framer()
    fr.feed(b"\r\n\r\na NOOP\r\n")
    assert drain(fr) == [CommandBytes(b"a NOOP")]


def test_in_command_reports_partial_commands() -> None:
    fr = Framer()
    fr.feed(b"a LOGIN {3}\r\n")
    drain(fr)
    assert fr.in_command()
    fr.feed(b"abc x\r\n")
    drain(fr)
    assert not fr.in_command()
