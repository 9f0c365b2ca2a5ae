"""Typed IMAP commands, as the parser produces them (RFC 3501 §6, RFC 9051 §6, extensions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailstore.imap.fetch_items import FetchAtt
from mailstore.imap.search_keys import SearchKey
from mailstore.imap.seqset import SeqSet


@dataclass(frozen=True, slots=True)
class Command:
    """A command without arguments (CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE,
    UNSELECT, IDLE, NAMESPACE, EXPUNGE)."""

    tag: bytes
    name: str


@dataclass(frozen=True, slots=True)
class Login(Command):
    """RFC 3501 §6.2.3."""

    user: bytes = b""
    password: bytes = b""


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """RFC 3501 §6.2.2; ``initial`` is the SASL-IR initial response (RFC 4959), still base64."""

    mechanism: str = ""
    initial: bytes | None = None


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """RFC 5161 §3.1."""

    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971 §3.1; ``None`` for ``ID NIL``."""

    params: tuple[tuple[bytes, bytes | None], ...] | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    """SELECT / EXAMINE (RFC 3501 §6.3.1-2) with the CONDSTORE parameter (RFC 7162 §3.1.8)."""

    mailbox: str = ""
    condstore: bool = False


@dataclass(frozen=True, slots=True)
class MailboxCommand(Command):
    """CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE (RFC 3501 §6.3.3-4, §6.3.6-7).

    ``special_use`` is the CREATE ``USE`` parameter (RFC 6154 §3).
    """

    mailbox: str = ""
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rename(Command):
    """RFC 3501 §6.3.5."""

    old: str = ""
    new: str = ""


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST / LSUB (RFC 3501 §6.3.8-9) with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819)
    and SPECIAL-USE (RFC 6154 §5) options."""

    reference: str = ""
    patterns: tuple[str, ...] = ()
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Status(Command):
    """RFC 3501 §6.3.10, with SIZE (RFC 8438) and HIGHESTMODSEQ (RFC 7162 §3.1.6)."""

    mailbox: str = ""
    items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Append(Command):
    """RFC 3501 §6.3.11 (one message; ``binary`` for a ``~{n}`` literal, RFC 3516 §4.4)."""

    mailbox: str = ""
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    message: bytes = b""
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH / UID SEARCH (RFC 3501 §6.4.4) with ESEARCH return options (RFC 4731 §3,
    RFC 9051 §6.4.4) and SAVE (RFC 5182). ``returns`` is ``None`` for a plain SEARCH."""

    uid: bool = False
    charset: str = "US-ASCII"
    key: SearchKey | None = None
    returns: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH / UID FETCH (RFC 3501 §6.4.5) with CHANGEDSINCE (RFC 7162 §3.1.4)."""

    uid: bool = False
    seqset: SeqSet = field(default_factory=lambda: SeqSet(()))
    items: tuple[FetchAtt, ...] = ()
    changedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Store(Command):
    """STORE / UID STORE (RFC 3501 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).

    ``mode`` is ``"+"``, ``"-"`` or ``""`` (replace).
    """

    uid: bool = False
    seqset: SeqSet = field(default_factory=lambda: SeqSet(()))
    mode: str = ""
    silent: bool = False
    flags: tuple[str, ...] = ()
    unchangedsince: int | None = None


@dataclass(frozen=True, slots=True)
class Copy(Command):
    """COPY / UID COPY (RFC 3501 §6.4.7) and MOVE / UID MOVE (RFC 6851 §3)."""

    uid: bool = False
    seqset: SeqSet = field(default_factory=lambda: SeqSet(()))
    mailbox: str = ""


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1) when ``seqset`` is set."""

    uid: bool = False
    seqset: SeqSet | None = None
