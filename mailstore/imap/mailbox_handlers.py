"""Mailbox commands (RFC 3501 §6.3, RFC 9051 §6.3) with CONDSTORE (RFC 7162), UIDPLUS
(RFC 4315), SPECIAL-USE (RFC 6154), LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819),
STATUS=SIZE (RFC 8438) and APPENDLIMIT (RFC 7889)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Connection

from mailstore import folders
from mailstore.folders import MailboxError, MailboxInfo
from mailstore.imap import formatter
from mailstore.imap.commands import Append, List, MailboxCommand, Rename, Select, Status
from mailstore.imap.errors import CommandNo
from mailstore.imap.listing import (
    ListEntry,
    encode_name,
    list_entries,
    render_entry,
    separator_line,
)
from mailstore.imap.replies import PATIENT_APPEND_REFUSED, refusal
from mailstore.imap.selected import SelectedMailbox
from mailstore.imap.session import Result, Session
from mailstore.imap.state import State
from mailstore.imap_messages import Selection, claim_recent, load_selection
from mailstore.messages import MailboxNotFound, append_message, encode_index
from mailstore.tables import PATIENT
from policy.attachments import AttachmentLimits, check_message
from policy.decision import Reason


def _no(exc: MailboxError) -> CommandNo:
    return CommandNo(str(exc), exc.code.encode())


def _trycreate(name: str) -> CommandNo:
    return CommandNo(f"Mailbox {name} does not exist", b"TRYCREATE")


async def select(s: Session, cmd: Select) -> Result:
    """SELECT / EXAMINE (RFC 3501 §6.3.1-2, RFC 9051 §6.3.2-3 once IMAP4rev2 is enabled);
    a failed SELECT leaves no mailbox selected."""
    had = s.selected is not None
    s.deselect()
    s.state = State.AUTHENTICATED
    if had:
        s.io.write(formatter.untagged_status(b"OK", "Previous mailbox closed", b"CLOSED"))
    readonly = cmd.name == "EXAMINE"
    account_id = s.account_id
    rev2 = s.rev2

    def load(conn: Connection) -> tuple[Selection, list[MailboxInfo]] | None:
        box = folders.get_mailbox(conn, account_id, cmd.mailbox)
        if box is None:
            return None
        # RFC 9051 §6.3.2: the LIST response needs the mailbox's attributes (children).
        boxes = folders.list_mailboxes(conn, account_id) if rev2 else []
        return load_selection(conn, box.id, box), boxes

    found = await s.read(load)
    if found is None:
        raise CommandNo(f"Mailbox {cmd.mailbox} does not exist", b"NONEXISTENT")
    sel, boxes = found
    recent: list[int] = []
    if not rev2:  # RFC 9051 has no \Recent (Appendix E): nothing shown, nothing taken
        if readonly:
            recent = sel.recent  # EXAMINE shows \Recent without taking it (RFC 3501 §6.3.2)
        elif sel.recent:
            recent = await s.write(lambda tx: claim_recent(tx.conn, sel.info.id))
    if cmd.condstore:
        s.condstore = True  # RFC 7162 §3.1.8: SELECT (CONDSTORE) enables CONDSTORE
    mb = SelectedMailbox(sel, readonly=readonly, recent=recent, condstore=s.condstore)
    lines = [mb.flags_line(), b"* %d EXISTS\r\n" % mb.exists]
    if not rev2:
        lines.append(b"* %d RECENT\r\n" % len(mb.recent))
        first_unseen = mb.seq_of(sel.first_unseen) if sel.first_unseen else None
        if first_unseen is not None:
            lines.append(formatter.untagged_status(b"OK", "First unseen", b"UNSEEN %d" %
                                                   first_unseen))
    lines += [
        formatter.untagged_status(b"OK", "UIDs valid", b"UIDVALIDITY %d" % mb.uidvalidity),
        formatter.untagged_status(b"OK", "Predicted next UID", b"UIDNEXT %d" % mb.uidnext),
        formatter.untagged_status(
            b"OK", "Flags permitted",
            b"PERMANENTFLAGS ()" if readonly
            else b"PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)",
        ),
        formatter.untagged_status(b"OK", "Highest", b"HIGHESTMODSEQ %d" % mb.known_modseq),
    ]
    if rev2:
        lines.append(_select_list_line(s, sel.info.name, boxes))
    s.io.write(b"".join(lines))
    s.select(mb)
    s.state = State.SELECTED
    return f"{cmd.name} completed", b"READ-ONLY" if readonly else b"READ-WRITE"


def _select_list_line(s: Session, name: str, boxes: list[MailboxInfo]) -> bytes:
    """RFC 9051 §6.3.2: SELECT/EXAMINE answer ``* LIST (attrs) "/" name`` with accurate
    attributes (the same as LIST gives: children, special use)."""
    entries = [e for e in list_entries(boxes, "", [name]) if e.name == name]
    entry = entries[0] if entries else ListEntry(name, True, False, None)
    return render_entry(entry, command="LIST", utf8=s.utf8)


async def create(s: Session, cmd: MailboxCommand) -> Result:
    """RFC 3501 §6.3.3, CREATE-SPECIAL-USE (RFC 6154 §3)."""
    use = cmd.special_use[0] if cmd.special_use else None
    if len(cmd.special_use) > 1:
        raise CommandNo("one special use per mailbox", b"USEATTR")
    if use is not None and use not in folders.SPECIAL_USES:
        raise CommandNo(f"unknown special use {use}", b"USEATTR")
    account_id = s.account_id
    try:
        await s.write(lambda tx: folders.create_mailbox(tx.conn, account_id, cmd.mailbox, use))
    except MailboxError as exc:
        raise _no(exc) from None
    return None


async def delete(s: Session, cmd: MailboxCommand) -> Result:
    """RFC 3501 §6.3.4."""
    account_id = s.account_id
    try:
        box = await s.write(lambda tx: folders.delete_mailbox(tx.conn, account_id, cmd.mailbox))
    except MailboxError as exc:
        raise _no(exc) from None
    if s.selected is not None and s.selected.id == box.id:
        s.deselect()
        s.state = State.AUTHENTICATED
    s.changed(box.id)
    return None


async def rename(s: Session, cmd: Rename) -> Result:
    """RFC 3501 §6.3.5 (children follow; renaming INBOX moves its messages)."""
    account_id = s.account_id
    try:
        ids = await s.write(
            lambda tx: folders.rename_mailbox(tx.conn, account_id, cmd.old, cmd.new)
        )
    except MailboxError as exc:
        raise _no(exc) from None
    for mailbox_id in ids:
        s.changed(mailbox_id)
    if s.selected is not None and s.selected.id in ids:
        s.selected.name = folders.canonical_name(cmd.new)
    return None


async def subscribe(s: Session, cmd: MailboxCommand) -> Result:
    """SUBSCRIBE / UNSUBSCRIBE (RFC 3501 §6.3.6-7)."""
    account_id = s.account_id
    on = cmd.name == "SUBSCRIBE"
    try:
        await s.write(lambda tx: folders.set_subscribed(tx.conn, account_id, cmd.mailbox, on))
    except MailboxError as exc:
        raise _no(exc) from None
    return None


async def list_command(s: Session, cmd: List) -> Result:
    """LIST / LSUB (RFC 3501 §6.3.8-9, RFC 5258, RFC 5819, RFC 6154)."""
    if cmd.patterns == ("",) and not cmd.selection:
        s.io.write(separator_line(cmd.name))
        return None
    account_id = s.account_id
    boxes = await s.read(lambda conn: folders.list_mailboxes(conn, account_id))
    entries = list_entries(
        boxes, cmd.reference, cmd.patterns, selection=cmd.selection, returns=cmd.returns,
        lsub=cmd.name == "LSUB",
    )
    statuses: dict[str, dict[str, int]] = {}
    if cmd.status_items:
        by_name = {b.name: b for b in boxes}
        wanted = [by_name[e.name] for e in entries if e.exists and e.name in by_name]

        def load(conn: Connection) -> dict[str, dict[str, int]]:
            return {b.name: folders.status(conn, b, cmd.status_items) for b in wanted}

        statuses = await s.read(load)
    out = []
    for entry in entries:
        out.append(render_entry(entry, command=cmd.name, utf8=s.utf8, selection=cmd.selection))
        if entry.name in statuses:
            out.append(_status_line(s, entry.name, statuses[entry.name], cmd.status_items))
    s.io.write(b"".join(out))
    return None


def _status_line(s: Session, name: str, values: dict[str, int], items: tuple[str, ...]) -> bytes:
    encoded = formatter.astring(encode_name(name, utf8=s.utf8), utf8=s.utf8)
    body = b" ".join(b"%s %d" % (i.encode(), values[i]) for i in items if i in values)
    return formatter.untagged(b"STATUS " + encoded + b" (" + body + b")")


async def status(s: Session, cmd: Status) -> Result:
    """RFC 3501 §6.3.10 with SIZE (RFC 8438), HIGHESTMODSEQ (RFC 7162 §3.1.6), DELETED."""
    account_id = s.account_id

    def load(conn: Connection) -> tuple[MailboxInfo, dict[str, int]] | None:
        box = folders.get_mailbox(conn, account_id, cmd.mailbox)
        return (box, folders.status(conn, box, cmd.items)) if box else None

    found = await s.read(load)
    if found is None:
        raise CommandNo(f"Mailbox {cmd.mailbox} does not exist", b"NONEXISTENT")
    box, values = found
    if "HIGHESTMODSEQ" in cmd.items:
        s.condstore = True  # RFC 7162 §3.1: STATUS (HIGHESTMODSEQ) enables CONDSTORE
    s.io.write(_status_line(s, box.name, values, cmd.items))
    return None


def _policy_check(raw: bytes, limits: AttachmentLimits) -> None:
    """APPEND refuses what the submission path refuses (ARCHITECTURE.md §6): size,
    attachment types and sizes, archives (policy.attachments, with the ``[policy]`` limits)."""
    report = check_message(raw, limits=limits)
    if not report.decision.allowed:
        raise refusal(report.decision.reason, report.decision.detail)


async def append(s: Session, cmd: Append) -> Result:
    """RFC 3501 §6.3.11 with APPENDUID (RFC 4315 §3); NO [TRYCREATE] for a missing mailbox.

    Never for a patient account (DOMAIN.md §5: patients have no IMAP access; this guards
    the case where one got authenticated anyway): no planted "received" message.
    """
    if s.account is None or s.account.kind == PATIENT:
        raise CommandNo(PATIENT_APPEND_REFUSED.text, PATIENT_APPEND_REFUSED.code)
    settings = s.ctx.settings
    raw = cmd.message
    if len(raw) > settings.max_message_size:
        raise refusal(Reason.MESSAGE_TOO_LARGE, f"{len(raw)} octets")
    if not raw:
        raise CommandNo("an empty message cannot be appended", b"CANNOT")
    account_id = s.account_id
    box = await s.read(lambda conn: folders.get_mailbox(conn, account_id, cmd.mailbox))
    if box is None:
        raise _trycreate(cmd.mailbox)
    loop = asyncio.get_running_loop()
    limits = replace(settings.attachment_limits, max_message_size=settings.max_message_size)
    await loop.run_in_executor(None, _policy_check, raw, limits)
    index_json = await loop.run_in_executor(None, encode_index, raw)
    flags = [f for f in cmd.flags if f != "\\Recent"]
    when = (cmd.internal_date or datetime.now(UTC)).astimezone(UTC)
    keystore = s.ctx.keystore
    try:
        stored = await s.write(
            lambda tx: append_message(
                tx, keystore, account_id, box.id, raw, flags=flags, internal_date=when,
                index_json=index_json, notify=s.ctx.notifier.mailbox_changed,
            )
        )
    except MailboxNotFound:
        raise _trycreate(cmd.mailbox) from None
    if s.selected is not None and s.selected.id == box.id:
        s.dirty = True
    return "APPEND completed", b"APPENDUID %d %d" % (box.uidvalidity, stored.uid)
