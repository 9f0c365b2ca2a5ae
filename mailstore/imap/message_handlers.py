"""Commands on the selected mailbox (RFC 3501 §6.4, RFC 9051 §6.4): FETCH, STORE, SEARCH,
COPY/MOVE (RFC 6851), EXPUNGE/UID EXPUNGE (RFC 4315), CHECK, CLOSE, UNSELECT (RFC 3691);
CONDSTORE (RFC 7162), ESEARCH (RFC 4731), SEARCHRES (RFC 5182)."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection

from audit.events import Action, AuditEvent
from mailstore import folders
from mailstore.imap import formatter
from mailstore.imap.commands import Command, Copy, Expunge, Fetch, Search, Store
from mailstore.imap.errors import CommandNo
from mailstore.imap.fetch_items import FetchAtt
from mailstore.imap.fetch_plan import FetchPlan, Reads, lean_plan, render_batch
from mailstore.imap.fetch_render import flags_value, needs, render_fetch
from mailstore.imap.search_keys import uses_modseq
from mailstore.imap.selected import SelectedMailbox
from mailstore.imap.seqset import compress, ordered_pairs
from mailstore.imap.session import NO_TAGGED, Result, Session
from mailstore.imap.state import State
from mailstore.imap_cache import patient_refs
from mailstore.imap_messages import (
    copy_messages,
    expunge,
    fetch_rows,
    load_messages,
    sealed_metas,
    store_flags,
    unflagged,
)
from mailstore.imap_search import SearchContext, run_search

_CONTENT_TEXTS = (None, "TEXT")


def _writable(mb: SelectedMailbox) -> None:
    if mb.readonly:
        raise CommandNo("The mailbox is read-only (EXAMINE)", b"READ-ONLY")


# -- FETCH ------------------------------------------------------------------------------


def _reads_content(items: Sequence[FetchAtt]) -> bool:
    for att in items:
        if att.name in ("RFC822", "RFC822.TEXT", "BINARY[]"):
            return True
        if att.name == "BODY[]" and att.section is not None and (
            att.section.text in _CONTENT_TEXTS or att.section.part
        ) and att.section.text not in ("MIME", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            return True
    return False


def _patient_reads(s: Session, mb: SelectedMailbox, reads: list[Reads]) -> list[AuditEvent]:
    """Reads of a patient's message by a professional (ARCHITECTURE.md §2 flow 6)."""
    domain = s.ctx.settings.patient_domain.lower()
    account = s.account
    if not domain or account is None:
        return []
    own = account.ins.upper() if account.ins else None
    events = []
    for uid, (message_id, refs) in reads:
        for ins in sorted({ins for ins, host in refs if host == domain and ins != own}):
            events.append(AuditEvent(
                action=Action.PATIENT_DATA_READ, actor=account.address, patient_ins=ins,
                message_id=message_id, client_ip=s.io.peer_ip, protocol="imap",
                object_ids=(("mailbox_uid", f"{mb.id}/{uid}"),),
            ))
    return events


async def _journal_reads(s: Session, events: list[AuditEvent]) -> None:
    journal = s.ctx.journal
    if not events or journal is None:
        return

    def job(tx: Any) -> None:
        journal.append(tx.conn, events)

    await s.write(job)


def _batches(
    uids: list[int],
    first: int,
    most: int,
    sizes: Mapping[int, int] | None = None,
    budget: int = 0,
) -> list[list[int]]:
    """``uids`` cut in batches growing from ``first`` to ``most``: the first answers go
    out early, and the client reads them while the next batches are prepared. With
    ``sizes`` (message sizes by UID), a batch also stops before its messages pass
    ``budget`` bytes (one message at least): a batch's bytes are all in memory at once."""
    out: list[list[int]] = []
    size, start = max(1, min(first, most)), 0
    while start < len(uids):
        stop = min(len(uids), start + size)
        if sizes is not None:
            total, end = 0, start
            while end < stop:
                total += sizes.get(uids[end], 0)
                if total > budget and end > start:
                    break
                end += 1
            stop = end
        out.append(uids[start:stop])
        start = stop
        size = min(most, size * 2)
    return out


def _seq_numbers(uid_list: Sequence[int]) -> Callable[[list[int]], Sequence[int | None]]:
    """Sequence numbers of ascending UIDs in ``uid_list`` (``None``: not there)."""

    def seqs(uids: list[int]) -> Sequence[int | None]:
        if not uids:
            return []
        first = bisect_left(uid_list, uids[0])
        if list(uid_list[first : first + len(uids)]) == uids:  # a run (FETCH 1:*)
            return range(first + 1, first + len(uids) + 1)
        out: list[int | None] = []
        i, n = first, len(uid_list)
        for uid in uids:
            i = bisect_left(uid_list, uid, i)
            out.append(i + 1 if i < n and uid_list[i] == uid else None)
        return out

    return seqs


def _discard(task: asyncio.Future[Any] | None) -> None:
    """Drop a prefetch nobody will wait for (its failure, if any, is not ours to log)."""
    if task is None:
        return
    if not task.cancel() and not task.cancelled():
        task.exception()


#: A batch's responses and, when journaled, the reads they are.
_Batch = tuple[bytes | bytearray, list[Reads]]
#: A batch, or the UIDs in it that lack \Seen (then nothing was rendered).
_Outcome = _Batch | list[int]


async def fetch(s: Session, cmd: Fetch) -> Result:
    """FETCH / UID FETCH (RFC 3501 §6.4.5, §6.4.8) with CHANGEDSINCE (RFC 7162 §3.1.4)."""
    mb = s.require_selected()
    uids = s.target_uids(cmd.seqset, cmd.uid)
    items = list(cmd.items)
    names = {a.name for a in items}
    if cmd.uid and "UID" not in names:
        items.insert(0, FetchAtt("UID"))  # RFC 3501 §6.4.8
    if cmd.changedsince is not None:
        s.condstore = mb.condstore = True
    if (cmd.changedsince is not None or (s.condstore and "MODSEQ" in names)) and (
        "MODSEQ" not in names
    ):
        items.append(FetchAtt("MODSEQ"))
    sets_seen = not mb.readonly and any(a.sets_seen for a in items)
    if sets_seen and "FLAGS" not in names:
        items.append(FetchAtt("FLAGS"))
    journal_reads = (
        s.ctx.journal is not None and bool(s.ctx.settings.patient_domain)
        and _reads_content(items)
    )
    # RFC 3501 §6.4.5: BODY[] and RFC822 set \Seen. Batches report messages without it
    # (from the rows they read anyway): then one write sets it on the rest of the
    # command's messages and the batch is read again. A download of messages already
    # read writes nothing and costs no extra query. With CHANGEDSINCE, rows are filtered
    # by MODSEQ, so \Seen is set first, as the command names them all.
    check = sets_seen and cmd.changedsince is None
    if sets_seen and not check and uids:
        unseen = await s.read(lambda conn: unflagged(conn, mb.id, uids, "\\Seen"))
        if unseen:
            await _set_seen(s, mb, unseen)
    plan = lean_plan(items, journal=journal_reads)
    if plan is not None:
        job = _lean_job(s, mb, cmd, plan)
        body = "body" in plan.columns
    else:
        job = _general_job(s, mb, cmd, items, journal_reads)
        body = needs(items).body
    settings = s.ctx.settings
    most = settings.fetch_batch
    if body:
        # RFC 3501 §6.4.5 bounds no set: message bytes go in batches of bounded size (a
        # mailbox of 20 MB scans would otherwise be read 100 messages at a time, twice
        # over with the prefetch).
        sizes: dict[int, int] | None = None
        if len(uids) > 1:
            rows = await s.read(lambda conn: fetch_rows(conn, mb.id, uids, ("uid", "size")))
            sizes = dict(rows)
        batches = _batches(uids, 8, max(1, most // 5), sizes, settings.fetch_batch_bytes)
    else:
        batches = _batches(uids, 100, most)

    def submit(chunk: list[int], check_seen: bool) -> asyncio.Future[_Outcome]:
        return asyncio.ensure_future(s.read(partial(job, chunk, check_seen)))

    # One batch is prepared (reader thread) while the previous one is sent.
    ahead: asyncio.Future[_Outcome] | None = None
    offset = 0
    try:
        for k, chunk in enumerate(batches):
            current = ahead or submit(chunk, check)
            ahead = None
            outcome = await current
            if isinstance(outcome, list):
                await _set_seen(s, mb, uids[offset:])
                check = False
                outcome = await submit(chunk, False)
            assert not isinstance(outcome, list)
            offset += len(chunk)
            if k + 1 < len(batches):
                ahead = submit(batches[k + 1], check)
            data, reads = outcome
            if reads:
                await _journal_reads(s, _patient_reads(s, mb, reads))
            s.io.write(data)
            await s.io.drain()
    finally:
        _discard(ahead)
    return None


async def _set_seen(s: Session, mb: SelectedMailbox, uids: list[int]) -> None:
    res = await s.write(lambda tx: store_flags(tx.conn, mb.id, uids, "+", ["\\Seen"]))
    if res.changed:
        mb.own_modseqs.add(res.changed[0].modseq)
        s.changed(mb.id)


def _unseen(uids: Iterable[int], flags: Iterable[str]) -> list[int]:
    return [uid for uid, f in zip(uids, flags, strict=True) if "\\Seen" not in f.split()]


def _lean_job(
    s: Session, mb: SelectedMailbox, cmd: Fetch, plan: FetchPlan
) -> Callable[[list[int], bool, Connection], _Outcome]:
    """The reader-thread work of one batch on the hot path (:mod:`.fetch_plan`)."""
    keystore, account_id, cache = s.ctx.keystore, s.account_id, s.ctx.cache
    seqs = _seq_numbers(mb.uids)  # read in the reader thread: nothing else changes it now
    recent = frozenset(mb.recent)
    opens = plan.structure or "body" in plan.columns
    i_flags = plan.columns.index("flags") if "flags" in plan.columns else 0

    def job(chunk: list[int], check_seen: bool, conn: Connection) -> _Outcome:
        rows = fetch_rows(conn, mb.id, chunk, plan.columns, cmd.changedsince)
        if check_seen:
            lacking = _unseen((r[0] for r in rows), (r[i_flags] for r in rows))
            if lacking:
                return lacking
        cipher = keystore.cipher(conn, account_id) if opens and rows else None
        return render_batch(
            plan, rows, seqs=seqs, recent=recent, cipher=cipher, account_id=account_id,
            cache=cache, load_metas=lambda ids: sealed_metas(conn, ids),
        )

    return job


def _general_job(
    s: Session, mb: SelectedMailbox, cmd: Fetch, items: list[FetchAtt], journal_reads: bool
) -> Callable[[list[int], bool, Connection], _Outcome]:
    """The reader-thread work of one batch for any items (:mod:`.fetch_render`)."""
    keystore, account_id = s.ctx.keystore, s.account_id
    need = needs(items)
    seqs = _seq_numbers(mb.uids)
    recent = frozenset(mb.recent)

    def job(chunk: list[int], check_seen: bool, conn: Connection) -> _Outcome:
        loaded = load_messages(
            conn, keystore, account_id, mb.id, chunk, meta=need.meta or journal_reads,
            body=need.body, changedsince=cmd.changedsince, dates=need.dates,
        )
        if check_seen:
            lacking = _unseen((x.row.uid for x in loaded), (x.row.flags for x in loaded))
            if lacking:
                return lacking
        out = []
        reads: list[Reads] = []
        for item, seq in zip(loaded, seqs([x.row.uid for x in loaded]), strict=True):
            if seq is None:
                continue
            out.append(render_fetch(seq, items, item, recent=item.row.uid in recent))
            if journal_reads and item.meta is not None:
                reads.append((item.row.uid, patient_refs(item.meta)))
        return b"".join(out), reads

    return job


# -- STORE ------------------------------------------------------------------------------


async def store(s: Session, cmd: Store) -> Result:
    """STORE / UID STORE (RFC 3501 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3)."""
    mb = s.require_selected()
    _writable(mb)
    uids = s.target_uids(cmd.seqset, cmd.uid)
    if cmd.unchangedsince is not None:
        s.condstore = mb.condstore = True
    flags = [f for f in cmd.flags if f != "\\Recent"]
    res = await s.write(
        lambda tx: store_flags(tx.conn, mb.id, uids, cmd.mode, flags, cmd.unchangedsince)
    )
    if res.changed:
        mb.own_modseqs.add(res.changed[0].modseq)
        s.changed(mb.id)
    out: list[bytes] = []
    if mb.learn_keywords(flags):
        out.append(mb.flags_line())
    changed = {c.uid for c in res.changed}
    for uid in uids:
        state = res.current.get(uid)
        seq = mb.seq_of(uid)
        if state is None or seq is None or uid in res.modified:
            continue
        parts: list[bytes] = []
        if cmd.uid:
            parts.append(b"UID %d" % uid)
        if not cmd.silent:
            parts.append(b"FLAGS " + flags_value(state.flags, uid in mb.recent))
        elif not (mb.condstore and uid in changed):
            continue
        if mb.condstore:
            parts.append(b"MODSEQ (%d)" % state.modseq)
        out.append(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
    s.io.write(b"".join(out))
    if res.modified:
        if cmd.uid:
            numbers = res.modified
        else:
            numbers = [n for n in (mb.seq_of(u) for u in res.modified) if n is not None]
        return "Conditional STORE failed", b"MODIFIED " + compress(numbers)
    return None


# -- SEARCH -----------------------------------------------------------------------------


async def search(s: Session, cmd: Search) -> Result:
    """SEARCH / UID SEARCH (RFC 3501 §6.4.4), ESEARCH (RFC 4731 §3.1), SAVE (RFC 5182)."""
    mb = s.require_selected()
    assert cmd.key is not None
    ctx = SearchContext(uids=list(mb.uids), recent=frozenset(mb.recent), saved=s.saved_search)
    keystore = s.ctx.keystore
    account_id = s.account_id
    result = await s.read(
        lambda conn: run_search(conn, keystore, account_id, mb.id, cmd.key, ctx)  # type: ignore[arg-type]
    )
    modseq = uses_modseq(cmd.key)
    if modseq:
        s.condstore = mb.condstore = True
    numbers = result.uids if cmd.uid else [n for n in (mb.seq_of(u) for u in result.uids) if n]
    returns = cmd.returns
    if returns is not None and "SAVE" in returns:
        s.saved_search = list(result.uids)
        returns = tuple(r for r in returns if r != "SAVE")
        if not returns:
            return None
    if returns is None and not s.rev2:
        line = b"SEARCH" + b"".join(b" %d" % n for n in numbers)
        if modseq and numbers:
            line += b" (MODSEQ %d)" % result.highest_modseq
        s.io.write(formatter.untagged(line))
        return None
    opts = returns or ("ALL",)
    line = b'ESEARCH (TAG "' + cmd.tag.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'")'
    if cmd.uid:
        line += b" UID"
    if numbers:
        if "MIN" in opts:
            line += b" MIN %d" % numbers[0]
        if "MAX" in opts:
            line += b" MAX %d" % numbers[-1]
        if "ALL" in opts:
            line += b" ALL " + compress(numbers)
    if "COUNT" in opts:
        line += b" COUNT %d" % len(numbers)
    if modseq and numbers:
        line += b" MODSEQ %d" % result.highest_modseq
    s.io.write(formatter.untagged(line))
    return None


# -- COPY / MOVE ------------------------------------------------------------------------


async def copy(s: Session, cmd: Copy) -> Result:
    """COPY (RFC 3501 §6.4.7) and MOVE (RFC 6851 §3) with COPYUID (RFC 4315 §3)."""
    mb = s.require_selected()
    move = cmd.name == "MOVE"
    if move:
        _writable(mb)
    uids = s.target_uids(cmd.seqset, cmd.uid)
    account_id = s.account_id

    def job(tx: Any) -> Any:
        target = folders.get_mailbox(tx.conn, account_id, cmd.mailbox)
        if target is None:
            return None
        return copy_messages(tx.conn, mb.id, uids, target, move=move), target.id

    found = await s.write(job)
    if found is None:
        raise CommandNo(f"Mailbox {cmd.mailbox} does not exist", b"TRYCREATE")
    result, target_id = found
    if not result.source_uids:
        return f"{cmd.name} completed (no messages)", None
    s.changed(target_id)
    src, dst = ordered_pairs(result.source_uids, result.target_uids)
    code = b"COPYUID %d %s %s" % (result.uidvalidity, src, dst)
    if not move:
        return "COPY completed", code
    s.changed(mb.id)
    s.io.write(formatter.untagged_status(b"OK", "Moved", code))
    s.io.write(b"".join(b"* %d EXPUNGE\r\n" % n for n in mb.remove(result.source_uids)))
    return "MOVE completed", None


# -- EXPUNGE, CHECK, CLOSE, UNSELECT ----------------------------------------------------


async def expunge_command(s: Session, cmd: Expunge) -> Result:
    """EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1)."""
    mb = s.require_selected()
    _writable(mb)
    uids = s.target_uids(cmd.seqset, True) if cmd.seqset is not None else None
    gone = await s.write(lambda tx: expunge(tx.conn, mb.id, uids))
    if gone:
        s.changed(mb.id)
        s.io.write(b"".join(b"* %d EXPUNGE\r\n" % n for n in mb.remove(gone)))
    return None


async def check(s: Session, cmd: Command) -> Result:
    """RFC 3501 §6.4.1 (everything is already durable: like NOOP)."""
    await s.sync(allow_expunge=True, force=True)
    return None


async def close(s: Session, cmd: Command) -> Result:
    """CLOSE (RFC 3501 §6.4.2): expunge silently if read-write, then deselect."""
    mb = s.require_selected()
    if not mb.readonly:
        gone = await s.write(lambda tx: expunge(tx.conn, mb.id))
        if gone:
            s.changed(mb.id)
    s.deselect()
    s.state = State.AUTHENTICATED
    s.io.write(formatter.tagged(cmd.tag, b"OK", "CLOSE completed"))
    return NO_TAGGED


async def unselect(s: Session, cmd: Command) -> Result:
    """UNSELECT (RFC 3691 §2): deselect without expunging."""
    s.require_selected()
    s.deselect()
    s.state = State.AUTHENTICATED
    s.io.write(formatter.tagged(cmd.tag, b"OK", "UNSELECT completed"))
    return NO_TAGGED

