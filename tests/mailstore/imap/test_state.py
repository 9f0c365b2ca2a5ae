"""The connection state table (RFC 3501 §3)."""

from __future__ import annotations

import pytest

from mailstore.imap.errors import CommandBad
from mailstore.imap.parser import KNOWN_COMMANDS
from mailstore.imap.state import ALLOWED, TRANSITIONS, State, check


def test_every_parsed_command_has_a_row() -> None:
    assert set(KNOWN_COMMANDS) == set(ALLOWED)
    assert set(TRANSITIONS) <= set(ALLOWED)


@pytest.mark.parametrize(
    ("name", "state", "legal"),
    [
        ("CAPABILITY", State.NOT_AUTHENTICATED, True),
        ("ID", State.SELECTED, True),
        ("LOGIN", State.NOT_AUTHENTICATED, True),
        ("LOGIN", State.AUTHENTICATED, False),
        ("STARTTLS", State.SELECTED, False),
        ("SELECT", State.NOT_AUTHENTICATED, False),
        ("SELECT", State.SELECTED, True),
        ("APPEND", State.AUTHENTICATED, True),
        ("FETCH", State.AUTHENTICATED, False),
        ("UNSELECT", State.SELECTED, True),
        ("IDLE", State.SELECTED, True),
    ],
)
def test_legality(name: str, state: State, legal: bool) -> None:
    if legal:
        check(name, state)
    else:
        with pytest.raises(CommandBad):
            check(name, state)


def test_reasons_say_what_to_do() -> None:
    with pytest.raises(CommandBad, match="log in first"):
        check("LIST", State.NOT_AUTHENTICATED)
    with pytest.raises(CommandBad, match="SELECT one first"):
        check("FETCH", State.AUTHENTICATED)
    with pytest.raises(CommandBad, match="only valid before authentication"):
        check("LOGIN", State.SELECTED)
    with pytest.raises(CommandBad, match="only valid before authentication"):
        check("AUTHENTICATE", State.AUTHENTICATED)
