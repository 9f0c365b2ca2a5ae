"""FETCH's hot path (RFC 3501 §6.4.5 and §7.4.2, RFC 9051 §6.4.5 and §7.5.2).

Most FETCH commands ask for what a client needs to list a mailbox (``UID FLAGS ENVELOPE
RFC822.SIZE INTERNALDATE BODYSTRUCTURE``...) or to download whole messages (``BODY[]``,
``BODY.PEEK[]``, ``RFC822``). For those *lean* items a :class:`FetchPlan`, decided once per
command, says which ``message`` columns to read (the store's :func:`~mailstore.
imap_messages.fetch_rows`), and :func:`render_batch` turns a batch of rows into one
response buffer without building an object per message: structure renderings come from
the :class:`~mailstore.imap_cache.StructureCache` (the index is decrypted only on a miss),
message bytes are decrypted straight into the buffer
(:func:`~mailstore.crypto.open_sealed_into`). Any other item (sections with part numbers,
HEADER.FIELDS, BINARY...) takes the general path of :mod:`.fetch_render`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailstore.crypto import open_sealed, open_sealed_into, sealed_size
from mailstore.imap.fetch_items import FetchAtt, Section
from mailstore.imap.fetch_render import flags_value, internal_date
from mailstore.imap_cache import Structure, StructureCache
from mailstore.imap_messages import blob_aad

# What each lean item renders (one code per item).
_UID, _FLAGS, _MODSEQ, _SIZE, _DATE, _STRUCT, _WHOLE, _PARTIAL = range(8)

_SIMPLE = {
    "UID": _UID, "FLAGS": _FLAGS, "MODSEQ": _MODSEQ, "RFC822.SIZE": _SIZE,
    "INTERNALDATE": _DATE, "ENVELOPE": _STRUCT, "BODY": _STRUCT, "BODYSTRUCTURE": _STRUCT,
}
_WHOLE_MESSAGE = Section()

#: Reads of one message for the patient-read journal: ``(uid, (message_id, ((INS,
#: host), ...)))`` (see :attr:`mailstore.imap_cache.Structure.reads`).
Reads = tuple[int, tuple[str | None, tuple[tuple[str, str], ...]]]


@dataclass(frozen=True, slots=True)
class FetchPlan:
    """How to answer one FETCH command's items on the hot path."""

    #: ``(code, item name as answered, argument)`` per item, in the requested order.
    steps: tuple[tuple[int, bytes, Any], ...]
    #: The columns to read (names of :data:`mailstore.imap_messages.FETCH_COLUMNS`).
    columns: tuple[str, ...]
    #: The cache entry (structure renderings, journal facts) is needed.
    structure: bool
    #: The patient-read journal wants the reads of this command.
    journal: bool


def lean_plan(items: Sequence[FetchAtt], *, journal: bool) -> FetchPlan | None:
    """The plan for ``items``, or ``None`` when one of them needs the general path."""
    steps: list[tuple[int, bytes, Any]] = []
    for att in items:
        code = _SIMPLE.get(att.name) if att.section is None else None
        if code is not None:
            steps.append((code, att.name.encode(), att.name.lower()))
        elif att.name == "RFC822" or (att.name == "BODY[]" and att.section == _WHOLE_MESSAGE):
            if att.partial is None:
                steps.append((_WHOLE, att.response_name(), None))
            else:
                steps.append((_PARTIAL, att.response_name(), att.partial))
        else:
            return None
    codes = {code for code, _, _ in steps}
    body = bool(codes & {_WHOLE, _PARTIAL})
    journal = journal and body
    structure = _STRUCT in codes or journal
    columns = ["uid"]
    if _FLAGS in codes:
        columns.append("flags")
    if structure or body:
        columns.append("blob_id")
    if _MODSEQ in codes:
        columns.append("modseq")
    if _SIZE in codes:
        columns.append("size")
    if _DATE in codes:
        columns.append("internal_date")
    if body:
        # The index sits after the bytes in its row: on SQLite reading it later would walk
        # the bytes' pages again, so it comes with them (opened only on a cache miss).
        if structure:
            columns.append("meta")
        columns.append("body")
    return FetchPlan(tuple(steps), tuple(columns), structure, journal)


class _Body:
    """A message's bytes to decrypt into the response buffer."""

    __slots__ = ("aad", "blob_id", "sealed", "size")

    def __init__(self, sealed: bytes, aad: bytes, blob_id: str) -> None:
        self.sealed = sealed
        self.aad = aad
        self.blob_id = blob_id
        self.size = sealed_size(sealed)


def render_batch(
    plan: FetchPlan,
    rows: Sequence[Any],
    *,
    seqs: Callable[[list[int]], Sequence[int | None]],
    recent: frozenset[int],
    cipher: AESGCM | None,
    account_id: int,
    cache: StructureCache,
    load_metas: Callable[[list[str]], Iterable[tuple[str, bytes]]],
) -> tuple[bytes | bytearray, list[Reads]]:
    """The FETCH responses of ``rows`` (from :func:`~mailstore.imap_messages.fetch_rows`
    with ``plan.columns``) and, if the plan journals, the reads they are.

    ``seqs`` maps UIDs (ascending) to message sequence numbers (``None``: not in this
    session's view, no response); ``load_metas`` reads sealed indexes by blob id (cache
    misses when the rows do not carry them).
    """
    col = {name: i for i, name in enumerate(plan.columns)}
    numbers = seqs([r[0] for r in rows])
    entries = _structures(plan, rows, col, cipher, account_id, cache, load_metas)
    if "body" not in col:
        return _listing(plan, rows, numbers, entries, col, recent), []
    i_flags, i_blob = col.get("flags", 0), col.get("blob_id", 0)
    i_modseq, i_size = col.get("modseq", 0), col.get("size", 0)
    i_date, i_body = col.get("internal_date", 0), col.get("body", 0)
    shown: dict[tuple[str, bool], bytes] = {}
    parts: list[bytes | _Body] = []
    text: list[bytes] = []
    reads: list[Reads] = []
    for n, r in enumerate(rows):
        seq = numbers[n]
        if seq is None:
            continue
        uid = r[0]
        head = b"* %d FETCH (" % seq
        items: list[bytes] = []
        for code, name, arg in plan.steps:
            if code == _UID:
                items.append(b"UID %d" % uid)
            elif code == _FLAGS:
                key = (r[i_flags], uid in recent)
                value = shown.get(key)
                if value is None:
                    value = shown[key] = b"FLAGS " + flags_value(*key)
                items.append(value)
            elif code == _STRUCT:
                entry = entries[n]
                assert entry is not None
                items.append(name + b" " + getattr(entry, arg))
            elif code == _SIZE:
                items.append(b"RFC822.SIZE %d" % r[i_size])
            elif code == _MODSEQ:
                items.append(b"MODSEQ (%d)" % r[i_modseq])
            elif code == _DATE:
                items.append(b"INTERNALDATE " + internal_date(r[i_date]))
            else:
                assert cipher is not None
                blob_id = r[i_blob]
                aad = blob_aad("blob-body", blob_id, account_id)
                if code == _WHOLE:
                    body = _Body(r[i_body], aad, blob_id)
                    items.append(name + b" {%d}\r\n" % body.size)
                    # The literal's bytes are decrypted into the buffer: the text stops
                    # here and goes on after them.
                    text.append(_joined(head, items))
                    parts.append(b"".join(text))
                    parts.append(body)
                    text, items, head = [], [], b""
                    continue
                raw = open_sealed(cipher, aad, r[i_body], what=f"message blob {blob_id}")
                start, length = arg
                data = raw[start : start + length]
                items.append(name + b" {%d}\r\n" % len(data) + data)
        text.append(_joined(head, items) + b")\r\n")
        if plan.journal:
            entry = entries[n]
            assert entry is not None
            reads.append((uid, entry.reads))
    if not parts:
        return b"".join(text), reads
    parts.append(b"".join(text))
    return _assemble(parts, cipher), reads


#: How each item without message bytes appears in a response's format, and what fills it.
_FORMATS = {_UID: b"UID %d", _FLAGS: b"FLAGS %b", _MODSEQ: b"MODSEQ (%d)",
            _SIZE: b"RFC822.SIZE %d", _DATE: b"INTERNALDATE %b"}


def _listing(
    plan: FetchPlan,
    rows: Sequence[Any],
    numbers: Sequence[int | None],
    entries: list[Structure | None],
    col: dict[str, int],
    recent: frozenset[int],
) -> bytes:
    """Responses without message bytes (a client listing a mailbox: the hot path of
    ``FETCH 1:* (FLAGS UID ENVELOPE)``), built a column at a time with one ``%`` format
    per message."""
    if not isinstance(numbers, range) and None in numbers:  # expunged from the view
        keep = [n for n, seq in enumerate(numbers) if seq is not None]
        rows = [rows[n] for n in keep]
        entries = [entries[n] for n in keep] if entries else entries
        numbers = [numbers[n] for n in keep]
    fmt = [b"* %d FETCH ("]
    columns: list[Sequence[Any]] = [numbers]
    for code, name, arg in plan.steps:
        fmt.append(_FORMATS.get(code, name + b" %b"))
        if code == _UID:
            columns.append([r[0] for r in rows])
        elif code == _FLAGS:
            i = col["flags"]
            shown: dict[tuple[str, bool], bytes] = {}
            values = []
            for r in rows:
                key = (r[i], r[0] in recent)
                value = shown.get(key)
                if value is None:
                    value = shown[key] = flags_value(*key)
                values.append(value)
            columns.append(values)
        elif code == _STRUCT:
            columns.append([getattr(e, arg) for e in entries])
        elif code == _DATE:
            i = col["internal_date"]
            columns.append([internal_date(r[i]) for r in rows])
        else:
            i = col["modseq" if code == _MODSEQ else "size"]
            columns.append([r[i] for r in rows])
    template = fmt[0] + b" ".join(fmt[1:]) + b")\r\n"
    return b"".join([template % values for values in zip(*columns, strict=True)])


def _joined(head: bytes, items: list[bytes]) -> bytes:
    """Items after the response's head, or, after a literal (``head`` empty), each
    after a space."""
    if head:
        return head + b" ".join(items)
    return b"".join([b" " + x for x in items])


def _assemble(parts: list[bytes | _Body], cipher: AESGCM | None) -> bytearray:
    """One buffer: text copied, message bytes decrypted in place (no intermediate copy)."""
    total = sum(p.size if isinstance(p, _Body) else len(p) for p in parts)
    buf = bytearray(total)
    view = memoryview(buf)
    pos = 0
    for p in parts:
        if isinstance(p, _Body):
            assert cipher is not None
            open_sealed_into(cipher, p.aad, p.sealed, view[pos : pos + p.size],
                             what=f"message blob {p.blob_id}")
            pos += p.size
        else:
            view[pos : pos + len(p)] = p
            pos += len(p)
    return buf


def _structures(
    plan: FetchPlan,
    rows: Sequence[Any],
    col: dict[str, int],
    cipher: AESGCM | None,
    account_id: int,
    cache: StructureCache,
    load_metas: Callable[[list[str]], Iterable[tuple[str, bytes]]],
) -> list[Structure | None]:
    """The cache entry of each row's blob (filled on a miss) if the plan needs them."""
    if not plan.structure:
        return []
    i_blob = col["blob_id"]
    entries = cache.get_many(r[i_blob] for r in rows)
    missing = [n for n, e in enumerate(entries) if e is None]
    if not missing:
        return entries
    assert cipher is not None
    i_meta = col.get("meta")
    if i_meta is not None:
        sealed = {rows[n][i_blob]: rows[n][i_meta] for n in missing}
    else:
        wanted = list(dict.fromkeys(rows[n][i_blob] for n in missing))
        sealed = dict(load_metas(wanted))
    opened: dict[str, Structure] = {}
    for n in missing:
        blob_id = rows[n][i_blob]
        entry = opened.get(blob_id)
        if entry is None:
            meta = orjson.loads(open_sealed(cipher, blob_aad("blob-meta", blob_id, account_id),
                                            sealed[blob_id], what=f"message index {blob_id}"))
            entry = opened[blob_id] = cache.put(blob_id, meta)
        entries[n] = entry
    return entries
