"""FETCH's hot path (:mod:`mailstore.imap.fetch_plan`) against the general renderer, byte for
byte, and its server-side behaviour: batches answered in order, message bytes decrypted
into the response, ``\\Seen`` written only where missing (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from mailstore.crypto import DecryptionError, seal
from mailstore.imap.commands import Fetch
from mailstore.imap.fetch_items import FetchAtt
from mailstore.imap.fetch_plan import FetchPlan, lean_plan, render_batch
from mailstore.imap.fetch_render import render_fetch
from mailstore.imap.parser import parse_command
from mailstore.imap.session import ImapSettings
from mailstore.imap_cache import StructureCache, patient_refs
from mailstore.imap_messages import Loaded, MessageRow, blob_aad
from mailstore.messages import encode_index
from tests.mailstore.imap import corpus
from tests.mailstore.imap.harness import ImapHarness, Wire

PASSWORD = "secret-password"
ACCOUNT = 7
INS = "2850175123456AB"
FROM_PATIENT = (
    f"From: Patient <{INS}@patient.test>\r\nTo: claire@chu.test\r\nSubject: Question\r\n"
    "Message-ID: <q1@patient.test>\r\n\r\nBonjour docteur\r\n"
).encode()
MESSAGES = [corpus.SIMPLE, corpus.WITH_PDF, corpus.FORWARDED, corpus.EIGHT_BIT_HEADERS,
            FROM_PATIENT]
#: The mailbox as the session sees it: UID 4 is not in the view (expunged meanwhile).
VIEW = [1, 2, 3, 5, 6, 8]
ROW_UIDS = [2, 3, 4, 6, 8]
FLAGS = ["", "\\Seen", "\\Flagged $Urgent", "\\Seen \\Answered", ""]
RECENT = frozenset({3, 8})
WHEN = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)


class _Store:
    """Messages sealed as the store seals them, as rows of either path."""

    def __init__(self) -> None:
        self.cipher = AESGCM(os.urandom(32))
        self.blobs: list[tuple[str, bytes, dict[str, Any], bytes, bytes]] = []
        for n, raw in enumerate(MESSAGES):
            blob_id = f"{n:032x}"
            index = encode_index(raw)
            self.blobs.append((
                blob_id, raw, orjson.loads(index),
                seal(self.cipher, blob_aad("blob-meta", blob_id, ACCOUNT), index),
                seal(self.cipher, blob_aad("blob-body", blob_id, ACCOUNT), raw),
            ))

    def rows(self, plan: FetchPlan) -> list[tuple[Any, ...]]:
        values: list[dict[str, Any]] = [
            {"uid": uid, "flags": FLAGS[n], "blob_id": blob_id, "modseq": 10 + n,
             "size": len(raw), "internal_date": WHEN, "meta": meta, "body": body}
            for n, (uid, (blob_id, raw, _, meta, body)) in enumerate(zip(ROW_UIDS, self.blobs,
                                                                        strict=True))
        ]
        return [tuple(v[c] for c in plan.columns) for v in values]

    def general(self, items: list[FetchAtt]) -> bytes:
        out = []
        for n, (uid, (blob_id, raw, meta, _, _)) in enumerate(zip(ROW_UIDS, self.blobs,
                                                                 strict=True)):
            if uid not in VIEW:
                continue
            row = MessageRow(uid, FLAGS[n], 10 + n, WHEN, len(raw), blob_id, False)
            out.append(render_fetch(VIEW.index(uid) + 1, items, Loaded(row, meta, raw),
                                    recent=uid in RECENT))
        return b"".join(out)

    def lean(self, plan: FetchPlan, cache: StructureCache | None = None,
             rows: list[tuple[Any, ...]] | None = None) -> tuple[bytes, list[Any]]:
        metas = {b[0]: b[3] for b in self.blobs}
        data, reads = render_batch(
            plan, rows if rows is not None else self.rows(plan), seqs=_seqs, recent=RECENT,
            cipher=self.cipher, account_id=ACCOUNT,
            cache=cache if cache is not None else StructureCache(),
            load_metas=lambda ids: [(i, metas[i]) for i in ids],
        )
        return bytes(data), reads


def _seqs(uids: Any) -> list[int | None]:
    return [VIEW.index(u) + 1 if u in VIEW else None for u in uids]


def _items(text: bytes) -> list[FetchAtt]:
    cmd = parse_command(b"a FETCH 1 " + text)
    assert isinstance(cmd, Fetch)
    return list(cmd.items)


@pytest.fixture(scope="module")
def store() -> _Store:
    return _Store()


@pytest.mark.parametrize("text", [
    b"(FLAGS UID ENVELOPE)", b"(UID RFC822.SIZE INTERNALDATE FLAGS BODYSTRUCTURE BODY MODSEQ)",
    b"BODY[]", b"(BODY.PEEK[] UID)", b"(UID BODY[] FLAGS)", b"(RFC822 BODY[]<5.20> ENVELOPE)",
    b"BODY.PEEK[]<0.100000>", b"(BODY[]<3000.10> UID)", b"FAST", b"ALL", b"FULL",
    b"(BODY[] RFC822 FLAGS)", b"(FLAGS RFC822)", b"UID",
])
def test_the_hot_path_answers_what_the_general_renderer_does(store: _Store, text: bytes) -> None:
    items = _items(text)
    plan = lean_plan(items, journal=False)
    assert plan is not None
    assert store.lean(plan)[0] == store.general(items)


atoms = st.sampled_from([
    b"UID", b"FLAGS", b"MODSEQ", b"RFC822.SIZE", b"INTERNALDATE", b"ENVELOPE", b"BODY",
    b"BODYSTRUCTURE", b"BODY[]", b"BODY.PEEK[]", b"RFC822", b"BODY[]<1.50>",
    b"BODY.PEEK[]<400.9000>",
])


@settings(max_examples=60, deadline=None)
@given(st.lists(atoms, min_size=1, max_size=6))
def test_any_lean_item_list_renders_as_the_general_path(chosen: list[bytes]) -> None:
    store = _Store()
    items = _items(b"(" + b" ".join(chosen) + b")")
    plan = lean_plan(items, journal=True)
    assert plan is not None
    assert store.lean(plan)[0] == store.general(items)


@pytest.mark.parametrize("text", [
    b"BODY[HEADER]", b"BODY.PEEK[1]", b"BINARY[1]", b"BINARY.SIZE[1]", b"RFC822.HEADER",
    b"RFC822.TEXT", b"(UID BODY[HEADER.FIELDS (Subject)])", b"BODY[TEXT]", b"BODY[1.MIME]",
])
def test_other_items_take_the_general_path(text: bytes) -> None:
    assert lean_plan(_items(text), journal=False) is None


def test_columns_follow_the_items() -> None:
    plan = lean_plan(_items(b"(UID FLAGS)"), journal=True)
    assert plan is not None and plan.columns == ("uid", "flags") and not plan.journal
    plan = lean_plan(_items(b"(UID ENVELOPE)"), journal=True)
    assert plan is not None and plan.columns == ("uid", "blob_id") and plan.structure
    plan = lean_plan(_items(b"(BODY.PEEK[] RFC822.SIZE)"), journal=False)
    assert plan is not None and plan.columns == ("uid", "blob_id", "size", "body")
    plan = lean_plan(_items(b"BODY[]"), journal=True)
    assert plan is not None and plan.journal and plan.columns == ("uid", "blob_id", "meta", "body")


def test_journal_reads_and_structure_cache(store: _Store) -> None:
    plan = lean_plan(_items(b"(UID BODY.PEEK[])"), journal=True)
    assert plan is not None
    cache = StructureCache()
    _, reads = store.lean(plan, cache)
    in_view = [(uid, b) for uid, b in zip(ROW_UIDS, store.blobs, strict=True) if uid in VIEW]
    assert reads == [(uid, patient_refs(b[2])) for uid, b in in_view]
    assert reads[-1] == (8, ("<q1@patient.test>", ((INS, "patient.test"),)))
    assert len(cache) == len(MESSAGES)
    # Cached: the rows' sealed indexes are not opened again (garbage would fail).
    junk = [(*r[:2], b"garbage", *r[3:]) for r in store.rows(plan)]
    assert store.lean(plan, cache, junk)[1] == reads


def test_structure_misses_are_loaded_once(store: _Store) -> None:
    plan = lean_plan(_items(b"(UID ENVELOPE)"), journal=False)
    assert plan is not None and "meta" not in plan.columns
    cache = StructureCache()
    asked: list[list[str]] = []
    metas = {b[0]: b[3] for b in store.blobs}

    def load(ids: list[str]) -> list[tuple[str, bytes]]:
        asked.append(ids)
        return [(i, metas[i]) for i in ids]

    for _ in range(2):
        render_batch(plan, store.rows(plan), seqs=_seqs, recent=RECENT, cipher=store.cipher,
                     account_id=ACCOUNT, cache=cache, load_metas=load)
    assert asked == [[b[0] for b in store.blobs]]


def test_a_body_moved_from_another_row_fails_the_whole_batch(store: _Store) -> None:
    plan = lean_plan(_items(b"BODY.PEEK[]"), journal=False)
    assert plan is not None
    rows = store.rows(plan)
    rows[1] = (*rows[1][:2], rows[2][2])  # message 3's ciphertext under message 2's id
    with pytest.raises(DecryptionError, match="moved from another row"):
        store.lean(plan, rows=rows)


# -- over real sockets -----------------------------------------------------------------------


@pytest.fixture
def small_batches(imap_db_url: str) -> Iterator[ImapHarness]:
    """Batches of a few messages: a FETCH of a few dozen takes many pipelined batches."""
    harness = ImapHarness(
        imap_db_url, settings=ImapSettings(patient_domain="patient.test", fetch_batch=10)
    ).start()
    try:
        yield harness
    finally:
        harness.stop()


_RESPONSE = re.compile(rb"\* (\d+) FETCH \(UID (\d+) BODY\[\] \{(\d+)\}\r\n")


def _bodies(data: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    pos = 0
    while (m := _RESPONSE.search(data, pos)) is not None:
        start = m.end()
        size = int(m.group(3))
        out.append((int(m.group(1)), int(m.group(2)), data[start : start + size]))
        pos = start + size
    return out


def _login(h: ImapHarness) -> Wire:
    w = Wire.connect(h.tls_port, tls=h.client_ssl())
    w.line()
    assert w.cmd(b"L", b"LOGIN claire@chu.test " + PASSWORD.encode()).startswith(b"L OK")
    assert w.cmd(b"S", b"SELECT INBOX").endswith(b"completed\r\n")
    return w


def _highest_modseq(w: Wire) -> int:
    found = re.search(rb"HIGHESTMODSEQ (\d+)", w.cmd(b"st", b"STATUS INBOX (HIGHESTMODSEQ)"))
    assert found is not None
    return int(found.group(1))


def test_many_batches_come_back_in_order_and_intact(small_batches: ImapHarness) -> None:
    acc = small_batches.create_account("claire@chu.test", PASSWORD)
    raws = [MESSAGES[n % len(MESSAGES)] + b"X-N: %d\r\n" % n for n in range(45)]
    small_batches.deliver(acc, raws)
    w = _login(small_batches)
    got = _bodies(w.cmd(b"a1", b"FETCH 1:* (UID BODY.PEEK[])"))
    assert [(seq, uid) for seq, uid, _ in got] == [(n, n) for n in range(1, 46)]
    assert [body for _, _, body in got] == raws
    sparse = list(range(3, 46, 4))
    answer = w.cmd(b"a2", b"UID FETCH " + b",".join(b"%d" % u for u in sparse)
                   + b" (UID BODY.PEEK[])")
    assert [(seq, uid, body) for seq, uid, body in _bodies(answer)] == [
        (u, u, raws[u - 1]) for u in sparse]
    assert answer.endswith(b"a2 OK FETCH completed\r\n")
    w.close()


def test_reading_messages_already_seen_writes_nothing(small_batches: ImapHarness) -> None:
    acc = small_batches.create_account("claire@chu.test", PASSWORD)
    small_batches.deliver(acc, [corpus.SIMPLE, corpus.WITH_PDF], flags=["\\Seen"])
    small_batches.deliver(acc, [corpus.FORWARDED])
    w = _login(small_batches)
    before = _highest_modseq(w)
    assert w.cmd(b"a1", b"FETCH 1:2 BODY[]").count(b"FLAGS (\\Seen \\Recent))") == 2
    assert _highest_modseq(w) == before
    assert w.cmd(b"a2", b"FETCH 1:3 BODY[]").count(b"FLAGS (\\Seen \\Recent))") == 3
    assert _highest_modseq(w) == before + 1
    w.close()


def test_seen_is_set_in_one_write_when_a_later_batch_needs_it(
    small_batches: ImapHarness,
) -> None:
    acc = small_batches.create_account("claire@chu.test", PASSWORD)
    small_batches.deliver(acc, [corpus.SIMPLE] * 12, flags=["\\Seen"])
    small_batches.deliver(acc, [corpus.WITH_PDF] * 12)
    w = _login(small_batches)
    before = _highest_modseq(w)
    # Lean items, then items of the general path: each sets \Seen where it was missing.
    answer = w.cmd(b"a1", b"FETCH 1:18 (UID BODY[])")
    assert answer.count(b"FLAGS (\\Seen \\Recent))\r\n") == 18
    assert _highest_modseq(w) == before + 1
    answer = w.cmd(b"a2", b"FETCH 1:* BODY[TEXT]")
    assert answer.count(b" FLAGS (\\Seen \\Recent))\r\n") == 24
    assert _highest_modseq(w) == before + 2
    assert w.cmd(b"a3", b"FETCH 1:* BODY[TEXT]").count(b"FLAGS (\\Seen") == 24
    assert _highest_modseq(w) == before + 2
    w.close()


def test_changedsince_with_body_sets_seen_first(small_batches: ImapHarness) -> None:
    acc = small_batches.create_account("claire@chu.test", PASSWORD)
    small_batches.deliver(acc, [corpus.SIMPLE] * 3)
    w = _login(small_batches)
    # Nothing changed since: only setting \Seen first makes the three messages answer.
    answer = w.cmd(b"a1", b"FETCH 1:3 (BODY[]) (CHANGEDSINCE %d)" % _highest_modseq(w))
    assert answer.count(b" MODSEQ (") == 3
    assert answer.count(b"FLAGS (\\Seen \\Recent))\r\n") == 3
    w.close()
