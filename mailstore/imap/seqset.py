"""Sequence sets: ``1:4,7,9:*`` and the saved search result ``$``.

RFC 3501 §9 ``sequence-set``; RFC 9051 §9 (``*`` is the largest number in use);
RFC 5182 §2 (``$`` names the result saved by ``SEARCH RETURN (SAVE)``).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailstore.imap.lexer import MAX_NUMBER, Cursor

#: ``None`` in a range stands for ``*``.
Bound = int | None


@dataclass(frozen=True, slots=True)
class SeqSet:
    ranges: tuple[tuple[Bound, Bound], ...]
    saved: bool = False  # the "$" marker of RFC 5182

    @classmethod
    def parse(cls, cur: Cursor) -> SeqSet:
        if cur.peek() == 0x24:  # "$"
            cur.pos += 1
            return cls((), saved=True)
        ranges: list[tuple[Bound, Bound]] = []
        data = cur.data
        while True:
            lo = _fast_seq_number(cur, data)
            hi = lo
            if cur.peek() == 0x3A:  # ":"
                cur.pos += 1
                hi = _fast_seq_number(cur, data)
            ranges.append((lo, hi))
            if cur.peek() != 0x2C:  # ","
                return cls(tuple(ranges))
            cur.pos += 1

    @classmethod
    def from_bytes(cls, data: bytes) -> SeqSet:
        cur = Cursor(data)
        value = cls.parse(cur)
        cur.end()
        return value

    def render(self) -> bytes:
        if self.saved:
            return b"$"
        parts = []
        for lo, hi in self.ranges:
            a = b"*" if lo is None else str(lo).encode()
            if lo == hi:
                parts.append(a)
            else:
                parts.append(a + b":" + (b"*" if hi is None else str(hi).encode()))
        return b",".join(parts)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges with ``*`` replaced by ``largest`` and each ``(low, high)`` ordered."""
        out = []
        for lo, hi in self.ranges:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            out.append((a, b) if a <= b else (b, a))
        return out

    def max_number(self, largest: int) -> int:
        """The highest number the set names (0 when empty)."""
        return max((hi for _, hi in self.resolve(largest)), default=0)

    def index_spans(self, values: Sequence[int]) -> list[tuple[int, int]]:
        """``[start, stop)`` spans of indexes into ascending ``values`` (UIDs) whose value
        the set names: ascending, disjoint, merged."""
        if not values:
            return []
        wanted = _merged([(lo, hi + 1) for lo, hi in self.resolve(values[-1])])
        return _merged([
            (bisect_left(values, lo), bisect_left(values, stop)) for lo, stop in wanted
        ])

    def seqnum_spans(self, count: int) -> list[tuple[int, int]]:
        """``[start, stop)`` spans of the 0-based positions of the message sequence numbers
        the set names (``*`` = ``count``): ascending, disjoint, merged."""
        return _merged([(max(lo, 1) - 1, min(hi, count)) for lo, hi in self.resolve(count)])

    def select_sorted(self, values: Sequence[int]) -> list[int]:
        """Indexes into ascending ``values`` (UIDs) whose value the set names, ascending."""
        return [i for start, stop in self.index_spans(values) for i in range(start, stop)]

    def select_seqnums(self, count: int) -> list[int]:
        """Message sequence numbers named by the set (``*`` = ``count``), ascending."""
        return [n + 1 for start, stop in self.seqnum_spans(count) for n in range(start, stop)]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, stop in sorted(spans):  # usually sorted already: linear
        if start >= stop:
            continue
        if out and start <= out[-1][1]:
            if stop > out[-1][1]:
                out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out


#: A ``seq-number`` (RFC 9051 §9) as the lexer reads it (up to its length limit).
_SEQ_NUMBER = re.compile(rb"[1-9][0-9]{0,19}(?![0-9])")


def _fast_seq_number(cur: Cursor, data: bytes) -> Bound:
    """:func:`_seq_number` with a regular expression for the common case (a long UID set
    is thousands of numbers); anything unusual goes to the lexer for its error."""
    m = _SEQ_NUMBER.match(data, cur.pos)
    if m is not None:
        value = int(m.group())
        if value <= MAX_NUMBER:
            cur.pos = m.end()
            return value
    return _seq_number(cur)


def _seq_number(cur: Cursor) -> Bound:
    if cur.peek() == 0x2A:  # "*"
        cur.pos += 1
        return None
    return cur.nz_number(maximum=MAX_NUMBER, what="a message number or UID")


def compress(numbers: Iterable[int]) -> bytes:
    """Render ascending-or-not numbers as the shortest ``a:b,c`` set (RFC 4315 §3 uid-set)."""
    ordered = sorted(set(numbers))
    parts: list[bytes] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if i == j:
            parts.append(str(ordered[i]).encode())
        else:
            parts.append(f"{ordered[i]}:{ordered[j]}".encode())
        i = j + 1
    return b",".join(parts)


def ordered_pairs(src: Sequence[int], dst: Sequence[int]) -> tuple[bytes, bytes]:
    """``COPYUID`` source and destination sets in matching order (RFC 4315 §3).

    Ranges may only be used where both sides are consecutive, so that the n-th source UID
    corresponds to the n-th destination UID.
    """
    s_parts: list[bytes] = []
    d_parts: list[bytes] = []
    i = 0
    while i < len(src):
        j = i
        while (
            j + 1 < len(src) and src[j + 1] == src[j] + 1 and dst[j + 1] == dst[j] + 1
        ):
            j += 1
        if i == j:
            s_parts.append(str(src[i]).encode())
            d_parts.append(str(dst[i]).encode())
        else:
            s_parts.append(f"{src[i]}:{src[j]}".encode())
            d_parts.append(f"{dst[i]}:{dst[j]}".encode())
        i = j + 1
    return b",".join(s_parts), b",".join(d_parts)
