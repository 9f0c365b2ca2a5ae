"""UID and sequence sets: spans against a reference, the fast parser against the lexer's
errors, and the SQL forms of a UID set on SQLite and PostgreSQL (one range, an IN list,
a long list of few ranges)."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, insert, select

from mailstore.db import Tx
from mailstore.imap.errors import ParseError
from mailstore.imap.lexer import Cursor
from mailstore.imap.seqset import SeqSet
from mailstore.imap_messages import fetch_rows, uid_condition, unflagged
from mailstore.tables import message
from tests.mailstore.imap.harness import ImapHarness

bounds = st.one_of(st.none(), st.integers(1, 60))
sets = st.lists(st.tuples(bounds, bounds), min_size=1, max_size=8).map(
    lambda r: SeqSet(tuple(r))
)


def _reference_sorted(s: SeqSet, values: list[int]) -> list[int]:
    """The set-based algorithm the spans replaced."""
    if not values:
        return []
    chosen: set[int] = set()
    for lo, hi in s.resolve(values[-1]):
        chosen.update(range(bisect_left(values, lo), bisect_right(values, hi)))
    return sorted(chosen)


@given(sets, st.lists(st.integers(1, 70), max_size=40).map(lambda v: sorted(set(v))))
def test_spans_name_what_the_set_names(s: SeqSet, values: list[int]) -> None:
    assert s.select_sorted(values) == _reference_sorted(s, values)
    spans = s.index_spans(values)
    assert all(a < b for a, b in spans)
    assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))  # merged
    count = len(values)
    expected = sorted({n for lo, hi in s.resolve(count) for n in range(max(lo, 1), hi + 1)
                       if n <= count})
    assert s.select_seqnums(count) == expected


@pytest.mark.parametrize("text", [b"5:9,100,2000:*", b"1:*", b"*:4000", b"3,3,4,5,4"])
def test_few_and_many_ranges_over_a_big_mailbox(text: bytes) -> None:
    values = array("I", [u for u in range(1, 6000) if u % 7])
    few = SeqSet.from_bytes(text)
    many = SeqSet.from_bytes(b",".join(b"%d" % u for u in range(1, 6100, 3)) + b"," + text)
    for s in (few, many):
        assert s.select_sorted(values) == _reference_sorted(s, list(values))


@pytest.mark.parametrize(("text", "error"), [
    (b"0", "expected a message number or UID"),
    (b"1:0", "expected a message number or UID"),
    (b"4294967296", "too large"),
    (b"1" * 21, "too large"),
    (b"1:x", "expected a message number or UID"),
    (b"x", "expected a message number or UID"),
])
def test_the_fast_parser_keeps_the_lexer_errors(text: bytes, error: str) -> None:
    with pytest.raises(ParseError, match=error):
        SeqSet.from_bytes(text)


def test_the_fast_parser_reads_what_the_lexer_reads() -> None:
    cur = Cursor(b"007:3,*,4294967295:9 rest")
    assert SeqSet.parse(cur).ranges == ((7, 3), (None, None), (4294967295, 9))
    assert cur.data[cur.pos :] == b" rest"


# -- the SQL forms --------------------------------------------------------------------------

UIDS = list(range(1, 40)) + list(range(100, 2200)) + [3000, 3002, 3004]


@pytest.fixture
def box(imap_server: ImapHarness) -> tuple[ImapHarness, int]:
    """A mailbox whose messages have the UIDs of :data:`UIDS` + 10,000 (odd ones \\Seen)."""
    acc = imap_server.create_account("claire@chu.test")
    mailbox_id = imap_server.mailbox_id(acc)
    blob_id = imap_server.deliver(acc, [b"Subject: x\r\n\r\nx\r\n"])[0].blob_id

    def fill(tx: Tx) -> None:
        tx.conn.execute(insert(message), [
            {"mailbox_id": mailbox_id, "uid": u + 10_000, "modseq": 1,
             "flags": "\\Seen" if u % 2 else "", "internal_date": datetime.now(UTC),
             "size": 1, "blob_id": blob_id, "recent": False}
            for u in UIDS
        ])

    imap_server.db.write_sync(fill)
    return imap_server, mailbox_id


@pytest.mark.parametrize("chosen", [
    [10_005],
    [u + 10_000 for u in range(100, 2200)],  # one range: BETWEEN
    [u + 10_000 for u in UIDS[::7]],  # a sparse list: IN
    [u + 10_000 for u in UIDS],  # more than the IN list limit, few ranges: BETWEENs
    [u + 10_000 for u in UIDS if u % 3],  # many ranges, long: IN
    [5],  # none there
])
def test_each_form_finds_exactly_the_set(box: tuple[ImapHarness, int], chosen: list[int]) -> None:
    h, mailbox_id = box
    present = {u + 10_000 for u in UIDS}

    def job(conn: Connection) -> tuple[list[int], list[int], list[int]]:
        via_condition = [r[0] for r in conn.execute(
            select(message.c.uid).where(message.c.mailbox_id == mailbox_id,
                                        uid_condition(chosen)).order_by(message.c.uid))]
        via_fetch = [r[0] for r in fetch_rows(conn, mailbox_id, chosen, ("uid",))]
        return via_condition, via_fetch, unflagged(conn, mailbox_id, chosen, "\\Seen")

    via_condition, via_fetch, unseen = h.db.read_sync(job)
    wanted = sorted(set(chosen) & present)
    assert via_condition == wanted and via_fetch == wanted
    assert unseen == [u for u in wanted if u % 2 == 0]
