"""Errors that know their IMAP reply (RFC 3501 §7.1, RFC 5530 response codes).

Peer faults (bad syntax, wrong state, a refused operation) become ``BAD`` or ``NO`` and are
logged at info; our faults (storage down) become ``NO [UNAVAILABLE]`` with an id that is
also in the log, together with the traceback.
"""

from __future__ import annotations


class ImapError(Exception):
    """A command ends with this tagged status, optional response code and text."""

    status: bytes = b"NO"

    def __init__(self, text: str, code: bytes | None = None, *, tag: bytes | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.tag = tag


class CommandBad(ImapError):
    """The peer broke the protocol (syntax, unknown command, wrong state): tagged ``BAD``."""

    status = b"BAD"


class CommandNo(ImapError):
    """The command was understood but failed or was refused: tagged ``NO``."""

    status = b"NO"


class ParseError(CommandBad):
    """A command could not be parsed; ``tag`` is set when the tag itself was readable."""


class Disconnect(Exception):
    """The connection must end after sending ``* BYE text`` (RFC 3501 §7.1.5)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
