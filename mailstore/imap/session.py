"""One IMAP connection's session: state, dispatch, untagged updates, IDLE.

Handlers live in :mod:`.auth_handlers`, :mod:`.mailbox_handlers` and
:mod:`.message_handlers`; each cites the RFC section it implements. The session talks to
the network only through :class:`SessionIO` (the asyncio shell in :mod:`.connection`), and
to the store only through ``db.read``/``db.write`` with the functions of
:mod:`mailstore.folders`, :mod:`mailstore.imap_messages` and :mod:`mailstore.imap_search`:
no database session is held between commands.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection

from mailstore.accounts import Account
from mailstore.auth import Authenticator
from mailstore.crypto import DecryptionError
from mailstore.db import Database, StorageUnavailable, Tx
from mailstore.imap import formatter
from mailstore.imap.commands import Command, Enable, Id
from mailstore.imap.errors import CommandBad, CommandNo, Disconnect, ImapError
from mailstore.imap.selected import SelectedMailbox
from mailstore.imap.seqset import SeqSet
from mailstore.imap.state import TRANSITIONS, State, check
from mailstore.imap_cache import StructureCache
from mailstore.imap_messages import (
    changes_since,
    claim_recent,
    count_up_to,
    mailbox_counters,
    uids_up_to,
)
from mailstore.keystore import KeyStore
from mailstore.messages import MailboxNotFound
from mailstore.notify import Notifier, Subscription
from policy.attachments import AttachmentLimits

log = logging.getLogger("mailstore.imap")
T = TypeVar("T")


@dataclass(frozen=True)
class ImapSettings:
    """Limits and timers (RFC 3501 §5.4: autologout ≥ 30 min once authenticated)."""

    hostname: str = "localhost"
    max_line: int = 64 * 1024
    max_literal: int = 1024 * 1024
    max_message_size: int = 20 * 1024 * 1024
    #: Seconds of silence before login, then once authenticated (IDLE included).
    preauth_timeout: float = 60.0
    autologout: float = 30 * 60.0
    #: Allow LOGIN/AUTHENTICATE PLAIN without TLS (benchmarks on loopback only).
    allow_plaintext_auth: bool = False
    #: The patient domain: reading a patient's message is journaled (DOMAIN.md §5).
    patient_domain: str = ""
    #: Messages per database round trip in FETCH.
    fetch_batch: int = 500
    #: Message bytes per round trip in a FETCH of message content (a batch is read while
    #: the one before is sent, each in several copies: sealed, plain, TLS): the memory
    #: one download of a whole mailbox holds, whatever the mailbox's size.
    fetch_batch_bytes: int = 4 * 1024 * 1024
    #: Blobs whose ENVELOPE/BODYSTRUCTURE stay in memory (0: no cache).
    structure_cache: int = 20_000
    #: What APPEND accepts as attachments (the ``[policy]`` limits submission applies;
    #: the message size limit is :attr:`max_message_size`).
    attachment_limits: AttachmentLimits = field(default_factory=AttachmentLimits)

    @classmethod
    def from_section(
        cls,
        section: Any,
        *,
        hostname: str,
        patient_domain: str,
        submission_max: int,
        attachment_limits: AttachmentLimits | None = None,
    ) -> ImapSettings:
        """From the ``[imap]`` configuration section (``caducee.config.ImapSection``) and
        the ``[policy]`` attachment limits."""
        return cls(
            hostname=hostname,
            max_line=section.max_line,
            max_literal=section.max_literal,
            max_message_size=section.max_message_size or submission_max,
            preauth_timeout=section.preauth_timeout,
            autologout=section.autologout,
            allow_plaintext_auth=section.allow_plaintext_auth,
            patient_domain=patient_domain,
            attachment_limits=attachment_limits or AttachmentLimits(),
        )


class Journal(Protocol):
    def append(self, conn: Connection, events: Any) -> None: ...


@dataclass
class ImapContext:
    """What every session shares: the store, the authenticator, the notifier, settings."""

    db: Database
    keystore: KeyStore
    authenticator: Authenticator
    notifier: Notifier
    settings: ImapSettings = field(default_factory=ImapSettings)
    ssl_context: Any = None
    journal: Journal | None = None
    cache: StructureCache = field(default_factory=StructureCache)


class SessionIO(Protocol):
    """The connection seen from a session."""

    peer_ip: str | None

    @property
    def tls_active(self) -> bool: ...

    def write(self, data: bytes | bytearray) -> None: ...

    async def drain(self) -> None: ...

    def start_tls(self) -> None: ...

    def read_line(self) -> asyncio.Future[bytes]: ...

    def enter_idle(self) -> None: ...

    def peer_certificate(self) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


#: A handler's result: ``None`` for "<NAME> completed", or ``(text, code)``; IDLE returns
#: :data:`NO_TAGGED` because its tagged reply comes later.
Result = tuple[str, bytes | None] | None
NO_TAGGED: tuple[str, bytes | None] = ("", b"\x00")
Handler = Callable[["Session", Any], Awaitable[Result]]

#: Commands during which EXPUNGE must not be sent (RFC 3501 §7.4.1).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH"})


class Session:
    __slots__ = (
        "_refresh", "account", "condstore", "ctx", "dirty", "idle_tag", "io", "last_activity",
        "rev2", "saved_search", "selected", "state", "subscription",
    )

    def __init__(self, ctx: ImapContext, io: SessionIO) -> None:
        self.ctx = ctx
        self.io = io
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.selected: SelectedMailbox | None = None
        self.subscription: Subscription | None = None
        self.rev2 = False
        self.condstore = False
        self.idle_tag: bytes | None = None
        self.dirty = False
        self.saved_search: list[int] = []
        self._refresh: asyncio.Task[None] | None = None
        self.last_activity = time.monotonic()

    # -- capabilities and greeting --------------------------------------------------------

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE"]
        if self.state is State.NOT_AUTHENTICATED:
            can_auth = self.io.tls_active or self.ctx.settings.allow_plaintext_auth
            if not self.io.tls_active and self.ctx.ssl_context is not None:
                caps.append("STARTTLS")
            if can_auth:
                caps.append("AUTH=PLAIN")
                if self.io.peer_certificate() is not None:
                    caps.append("AUTH=EXTERNAL")
            else:
                caps.append("LOGINDISABLED")
            return caps
        caps += [
            "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE",
            "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "CONDSTORE",
            "ESEARCH", "SEARCHRES", "BINARY", f"APPENDLIMIT={self.ctx.settings.max_message_size}",
        ]
        return caps

    def capability_code(self) -> bytes:
        return b"CAPABILITY " + " ".join(self.capabilities()).encode()

    def greeting(self) -> bytes:
        return formatter.untagged_status(b"OK", "Caducee IMAP ready", self.capability_code())

    # -- database helpers --------------------------------------------------------------------

    async def read(self, fn: Callable[[Connection], T]) -> T:
        return await self.ctx.db.read(fn)

    async def write(self, fn: Callable[[Tx], T]) -> T:
        return await self.ctx.db.write(fn)

    @property
    def account_id(self) -> int:
        assert self.account is not None
        return self.account.id

    @property
    def utf8(self) -> bool:
        """Mailbox names and strings in UTF-8 (RFC 9051 §5.1 once IMAP4rev2 is enabled)."""
        return self.rev2

    def require_selected(self) -> SelectedMailbox:
        if self.selected is None:
            raise CommandBad("select a mailbox first")
        return self.selected

    def changed(self, mailbox_id: int) -> None:
        """Tell every connection watching ``mailbox_id`` (here and on other nodes)."""
        self.ctx.notifier.mailbox_changed(mailbox_id)

    # -- dispatch --------------------------------------------------------------------------

    async def run(self, cmd: Command) -> None:
        """Run one command and send its tagged reply (errors become NO/BAD/BYE)."""
        from mailstore.imap.handlers import HANDLERS

        tag = cmd.tag
        try:
            check(cmd.name, self.state)
            result = await HANDLERS[cmd.name](self, cmd)
            if result is NO_TAGGED:
                return
            if cmd.name != "LOGOUT" and self.state is not State.LOGOUT:
                await self.sync(allow_expunge=cmd.name not in _NO_EXPUNGE or _is_uid(cmd))
            text, code = result if result is not None else (f"{cmd.name} completed", None)
            new_state = TRANSITIONS.get(cmd.name)
            if new_state is not None and new_state is not State.LOGOUT:
                self.state = new_state
            self.io.write(formatter.tagged(tag, b"OK", text, code))
            # A client that pipelines without reading waits here: output stays bounded.
            await self.io.drain()
        except ImapError as exc:
            log.info("IMAP %s %s: %s", cmd.name, exc.status.decode(), exc.text)
            self.io.write(formatter.tagged(tag, exc.status, exc.text, exc.code))
        except Disconnect as exc:
            self.io.write(formatter.untagged_status(b"BYE", exc.text))
            self.logout()
        except MailboxNotFound as exc:  # deleted by another connection meanwhile
            self.io.write(formatter.tagged(tag, b"NO", str(exc), b"NONEXISTENT"))
        except StorageUnavailable as exc:
            log.warning("IMAP %s: storage unavailable: %s", cmd.name, exc)
            self.io.write(formatter.tagged(tag, b"NO", "Temporary failure, try again",
                                           b"UNAVAILABLE"))
        except DecryptionError:
            ref = secrets.token_hex(4)
            log.exception("IMAP %s: a stored message failed authentication (ref %s)",
                          cmd.name, ref)
            self.io.write(formatter.tagged(tag, b"NO", f"Corrupted message (ref {ref})",
                                           b"SERVERBUG"))
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("IMAP %s failed (ref %s)", cmd.name, ref)
            self.io.write(formatter.tagged(tag, b"NO", f"Internal error (ref {ref})",
                                           b"SERVERBUG"))

    def logout(self) -> None:
        self.state = State.LOGOUT
        self.deselect()
        self.io.close()

    # -- selected mailbox and updates ---------------------------------------------------------

    def select(self, mailbox: SelectedMailbox) -> None:
        self.deselect()
        self.selected = mailbox
        self.subscription = self.ctx.notifier.subscribe(mailbox.id, self._on_change)

    def deselect(self) -> None:
        if self.subscription is not None:
            self.subscription.cancel()
            self.subscription = None
        self.selected = None
        self.dirty = False
        self.saved_search = []

    def _on_change(self, mailbox_id: int) -> None:
        self.dirty = True
        if self.idle_tag is not None and self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._idle_refresh())

    async def _idle_refresh(self) -> None:
        try:
            while self.dirty and self.idle_tag is not None:
                await self.sync(allow_expunge=True)
                await self.io.drain()
        except Disconnect as exc:
            self.io.write(formatter.untagged_status(b"BYE", exc.text))
            self.logout()
        except (StorageUnavailable, DecryptionError) as exc:
            log.warning("IMAP IDLE refresh failed: %s", exc)
        finally:
            self._refresh = None

    async def sync(self, *, allow_expunge: bool, force: bool = False) -> None:
        """Send what others changed in the selected mailbox (RFC 3501 §7.3-7.4)."""
        mb = self.selected
        if mb is None or not (self.dirty or force):
            return
        self.dirty = False
        known, top, exists = mb.known_modseq, mb.max_uid(), mb.exists

        def job(conn: Connection) -> Any:
            counters = mailbox_counters(conn, mb.id)
            if counters is None:
                return None
            uidnext, highest = counters
            if highest == known:
                return uidnext, highest, [], None
            changes = changes_since(conn, mb.id, known)
            present = None
            if count_up_to(conn, mb.id, top) < exists:
                present = uids_up_to(conn, mb.id, top)
            return uidnext, highest, changes, present

        result = await self.read(job)
        if result is None:
            raise Disconnect("The selected mailbox was deleted")
        uidnext, highest, changes, present = result
        if self.selected is not mb:
            return
        new = [c.uid for c in changes if c.uid > mb.max_uid()]
        claim = bool(new) and not mb.readonly and not self.rev2
        lines = mb.apply(
            uidnext=uidnext, highestmodseq=highest, changes=changes, present=present,
            allow_expunge=allow_expunge, report_recent=not self.rev2 and not claim,
        )
        if lines:
            self.io.write(b"".join(lines))
        if claim:
            # EXISTS is out before the claim commits (RFC 3501 §7.3.1-2 lets RECENT
            # follow): an idling client hears of new mail after one database read,
            # however long the writer's queue is (RFC 2177; issue 5: within 100 ms).
            claimed = await self.write(lambda tx: claim_recent(tx.conn, mb.id, new))
            if self.selected is mb:
                mb.recent.update(claimed)
                self.io.write(b"* %d RECENT\r\n" % len(mb.recent))

    # -- sequence sets ---------------------------------------------------------------------

    def target_uids(self, seqset: SeqSet, uid: bool) -> list[int]:
        """UIDs a sequence set names (RFC 3501 §9; ``$`` RFC 5182); BAD for bad numbers."""
        mb = self.require_selected()
        if seqset.saved:
            return [u for u in self.saved_search if mb.seq_of(u) is not None]
        if uid:
            spans = seqset.index_spans(mb.uids)
        else:
            if seqset.max_number(mb.exists) > mb.exists or mb.exists == 0:
                raise CommandBad("invalid message sequence number (no such message)")
            spans = seqset.seqnum_spans(mb.exists)
        out: list[int] = []
        for start, stop in spans:
            out += mb.uids[start:stop]
        return out


def _is_uid(cmd: Command) -> bool:
    return bool(getattr(cmd, "uid", False))


# -- commands valid in any state and the simple ones (RFC 3501 §6.1, extensions) -----------


async def capability(s: Session, cmd: Command) -> Result:
    """RFC 3501 §6.1.1."""
    s.io.write(formatter.untagged(b"CAPABILITY " + " ".join(s.capabilities()).encode()))
    return None


async def noop(s: Session, cmd: Command) -> Result:
    """RFC 3501 §6.1.2 (and CHECK, §6.4.1): report pending changes."""
    await s.sync(allow_expunge=True, force=True)
    return None


async def logout(s: Session, cmd: Command) -> Result:
    """RFC 3501 §6.1.3."""
    s.io.write(formatter.untagged_status(b"BYE", "Logging out"))
    s.io.write(formatter.tagged(cmd.tag, b"OK", "LOGOUT completed"))
    s.logout()
    return NO_TAGGED


async def id_command(s: Session, cmd: Id) -> Result:
    """RFC 2971 §3.1: tell nothing secret; the client's values are only logged."""
    if cmd.params:
        log.info("IMAP client id: %s", {k.decode("ascii", "replace"): (v or b"").decode(
            "ascii", "replace") for k, v in cmd.params[:10]})
    s.io.write(formatter.untagged(b'ID ("name" "Caducee" "vendor" "Caducee")'))
    return None


async def enable(s: Session, cmd: Enable) -> Result:
    """RFC 5161 §3.1: CONDSTORE (RFC 7162 §3.1) and IMAP4rev2 (RFC 9051 §6.3.1)."""
    enabled = []
    for cap in cmd.capabilities:
        if cap == "CONDSTORE":
            s.condstore = True
            if s.selected is not None:
                s.selected.condstore = True
            enabled.append("CONDSTORE")
        elif cap == "IMAP4REV2":
            s.rev2 = True
            if s.selected is not None:
                # RFC 5161 §3.1 lets a server accept ENABLE after SELECT; RFC 9051 has
                # no \Recent (Appendix E), so what this session took stops showing.
                s.selected.recent.clear()
            enabled.append("IMAP4rev2")
    s.io.write(formatter.untagged(b"ENABLED" + b"".join(b" " + e.encode() for e in enabled)))
    return None


async def namespace(s: Session, cmd: Command) -> Result:
    """RFC 2342 §5: one personal namespace, separator ``/``."""
    s.io.write(formatter.untagged(b'NAMESPACE (("" "/")) NIL NIL'))
    return None


async def starttls(s: Session, cmd: Command) -> Result:
    """RFC 3501 §6.2.1 (RFC 2595): the tagged OK goes in clear, then the handshake; any
    command pipelined after STARTTLS is thrown away (plaintext injection)."""
    if s.io.tls_active:
        raise CommandBad("TLS is already active")
    if s.ctx.ssl_context is None:
        raise CommandNo("TLS is not available on this port", b"UNAVAILABLE")
    s.io.write(formatter.tagged(cmd.tag, b"OK", "Begin TLS negotiation now"))
    s.io.start_tls()
    return NO_TAGGED


async def idle(s: Session, cmd: Command) -> Result:
    """RFC 2177 §3: updates are sent as they happen until the client sends DONE."""
    await s.sync(allow_expunge=True, force=True)
    s.io.write(formatter.continuation("idling"))
    s.idle_tag = cmd.tag
    s.io.enter_idle()
    if s.dirty and s._refresh is None and s.selected is not None:
        s._on_change(s.selected.id)
    return NO_TAGGED


async def end_idle(s: Session, line: bytes) -> None:
    """The line that ends IDLE: ``DONE`` (RFC 2177 §3), anything else is a BAD."""
    tag = s.idle_tag
    assert tag is not None
    s.idle_tag = None
    if s._refresh is not None:
        await asyncio.shield(s._refresh)
    try:
        await s.sync(allow_expunge=True)
    except Disconnect as exc:
        s.io.write(formatter.untagged_status(b"BYE", exc.text))
        s.logout()
        return
    if line.strip().upper() == b"DONE":
        s.io.write(formatter.tagged(tag, b"OK", "IDLE terminated"))
    else:
        s.io.write(formatter.tagged(tag, b"BAD", "expected DONE to end IDLE"))
