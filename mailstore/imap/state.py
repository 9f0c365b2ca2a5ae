"""Connection states and which command is legal in which (RFC 3501 §3, RFC 9051 §3).

The table is data (STYLE.md: h11's ``_state.py`` habit); the session asks :func:`check`
before running a handler and applies :data:`TRANSITIONS` after a successful one.
"""

from __future__ import annotations

from enum import Enum

from mailstore.imap.errors import CommandBad


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})

#: Command name → states in which it is legal.
ALLOWED: dict[str, frozenset[State]] = {
    # RFC 3501 §6.1: any state (ID: RFC 2971 §3.1)
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,
    # §6.2: not authenticated
    "STARTTLS": _NOT_AUTH,
    "AUTHENTICATE": _NOT_AUTH,
    "LOGIN": _NOT_AUTH,
    # §6.3: authenticated (and therefore selected)
    "ENABLE": _AUTH,  # RFC 5161 §3.1
    "SELECT": _AUTH,
    "EXAMINE": _AUTH,
    "CREATE": _AUTH,
    "DELETE": _AUTH,
    "RENAME": _AUTH,
    "SUBSCRIBE": _AUTH,
    "UNSUBSCRIBE": _AUTH,
    "LIST": _AUTH,
    "LSUB": _AUTH,
    "NAMESPACE": _AUTH,  # RFC 2342 §5
    "STATUS": _AUTH,
    "APPEND": _AUTH,
    "IDLE": _AUTH,  # RFC 2177 §3
    # §6.4: selected
    "CHECK": _SELECTED,
    "CLOSE": _SELECTED,
    "UNSELECT": _SELECTED,  # RFC 3691 §2
    "EXPUNGE": _SELECTED,
    "SEARCH": _SELECTED,
    "FETCH": _SELECTED,
    "STORE": _SELECTED,
    "COPY": _SELECTED,
    "MOVE": _SELECTED,  # RFC 6851 §3
}

#: Command name → state after it succeeds (commands not listed keep the state).
TRANSITIONS: dict[str, State] = {
    "LOGIN": State.AUTHENTICATED,
    "AUTHENTICATE": State.AUTHENTICATED,
    "SELECT": State.SELECTED,
    "EXAMINE": State.SELECTED,
    "CLOSE": State.AUTHENTICATED,
    "UNSELECT": State.AUTHENTICATED,
    "LOGOUT": State.LOGOUT,
}

_WRONG_STATE_TEXT = {
    State.NOT_AUTHENTICATED: "{name} needs an authenticated connection: log in first",
    State.AUTHENTICATED: "{name} needs a selected mailbox: SELECT one first",
    State.SELECTED: "{name} is only valid before authentication",
    State.LOGOUT: "{name}: the connection is closing",
}


def check(name: str, state: State) -> None:
    """Raise ``BAD`` with a reason when ``name`` is not legal in ``state``."""
    allowed = ALLOWED.get(name)
    if allowed is None:
        raise CommandBad(f"unknown command {name}")
    if state in allowed:
        return
    if state is State.AUTHENTICATED and allowed is _NOT_AUTH:
        raise CommandBad(f"{name} is only valid before authentication")
    raise CommandBad(_WRONG_STATE_TEXT[state].format(name=name))
