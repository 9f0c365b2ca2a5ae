"""The selected mailbox as one connection sees it (RFC 3501 §2.3.1.2, §7.3-7.4).

Message sequence numbers are positions in :attr:`SelectedMailbox.uids`. Changes made by
others are found by MODSEQ (flags, arrivals) and by count (expunges) and reported as
untagged ``EXPUNGE`` / ``EXISTS`` / ``RECENT`` / ``FETCH`` responses — expunges only when
the current command allows them (RFC 3501 §7.4.1: not during FETCH, STORE or SEARCH).
The state is small: the UIDs as a packed array shared between connections (copy on
write), a few counters, the recent set.
"""

from __future__ import annotations

import weakref
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from mailstore.folders import MailboxInfo
from mailstore.imap.fetch_render import flags_value
from mailstore.imap_messages import FlagChange, Selection

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


#: UID arrays by (mailbox, count, last UID): connections that select the same mailbox state
#: share one array until one of them changes it.
_SHARED: weakref.WeakValueDictionary[tuple[int, int, int], array[int]] = (
    weakref.WeakValueDictionary()
)


def _shared_uids(mailbox_id: int, uids: Sequence[int]) -> array[int]:
    arr = uids if isinstance(uids, array) else array("I", uids)  # 32-bit UIDs (§2.3.1.1)
    key = (mailbox_id, len(arr), arr[-1] if arr else 0)
    known = _SHARED.get(key)
    if known is not None and known == arr:
        return known
    _SHARED[key] = arr
    return arr


class SelectedMailbox:
    __slots__ = (
        "_owned",
        "condstore",
        "id",
        "keywords",
        "known_modseq",
        "name",
        "own_modseqs",
        "pending_expunge",
        "readonly",
        "recent",
        "uidnext",
        "uids",
        "uidvalidity",
    )

    def __init__(
        self, selection: Selection, *, readonly: bool, recent: Iterable[int], condstore: bool
    ) -> None:
        info: MailboxInfo = selection.info
        self.id = info.id
        self.name = info.name
        self.readonly = readonly
        self.uidvalidity = info.uidvalidity
        self.uidnext = info.uidnext
        self.known_modseq = info.highestmodseq
        #: Shared with every connection that selected the same state of this mailbox
        #: (copy on write): 1,000 clients idling on a 10,000-message INBOX keep one array.
        self.uids = _shared_uids(info.id, selection.uids)
        self._owned = False
        self.recent: set[int] = set(recent)
        self.condstore = condstore
        self.keywords: set[str] = set(selection.keywords)
        #: MODSEQs this connection created itself (not reported back to it).
        self.own_modseqs: set[int] = set()
        #: UIDs expunged by others, not yet announced (sequence numbers still count them).
        self.pending_expunge: set[int] = set()

    def _writable(self) -> None:
        if not self._owned:
            self.uids = array("I", self.uids)
            self._owned = True

    # -- numbering -----------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def flags_line(self) -> bytes:
        """``* FLAGS (...)`` (RFC 3501 §7.2.6)."""
        flags = list(SYSTEM_FLAGS) + sorted(self.keywords)
        return b"* FLAGS (" + " ".join(flags).encode() + b")\r\n"

    def learn_keywords(self, flags: Iterable[str]) -> bool:
        """Record keywords; ``True`` if one is new (send FLAGS again)."""
        new = {f for f in flags if not f.startswith("\\")} - self.keywords
        self.keywords |= new
        return bool(new)

    # -- our own changes -------------------------------------------------------------------

    def remove(self, uids: Iterable[int]) -> list[int]:
        """Drop expunged UIDs; return their sequence numbers, highest first (for EXPUNGE)."""
        seqs = []
        for uid in sorted(set(uids), reverse=True):
            seq = self.seq_of(uid)
            if seq is not None:
                self._writable()
                del self.uids[seq - 1]
                seqs.append(seq)
            self.recent.discard(uid)
            self.pending_expunge.discard(uid)
        return seqs

    # -- changes made by others ------------------------------------------------------------

    def apply(
        self,
        *,
        uidnext: int,
        highestmodseq: int,
        changes: Sequence[FlagChange],
        present: Sequence[int] | None,
        allow_expunge: bool,
        report_recent: bool = True,
    ) -> list[bytes]:
        """Apply what the database says; return the untagged responses to send.

        ``present`` lists the UIDs (up to our highest) still in the mailbox when a count
        showed that some are gone; ``changes`` are rows with a MODSEQ above ours.
        """
        out: list[bytes] = []
        if present is not None:
            self.pending_expunge |= set(self.uids) - set(present)
        if allow_expunge and self.pending_expunge:
            for seq in self.remove(list(self.pending_expunge)):
                out.append(b"* %d EXPUNGE\r\n" % seq)
        top = self.max_uid()
        new = [c for c in changes if c.uid > top]
        if new:
            self._writable()
            self.uids.extend(c.uid for c in new)
            out.append(b"* %d EXISTS\r\n" % self.exists)
            if report_recent:
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        new_keywords = False
        for c in changes:
            new_keywords |= self.learn_keywords(c.flags.split())
        if new_keywords:
            out.insert(0, self.flags_line())
        for c in changes:
            if c.uid > top or c.modseq in self.own_modseqs or c.uid in self.pending_expunge:
                continue
            number = self.seq_of(c.uid)
            if number is None:
                continue
            item = b"UID %d FLAGS " % c.uid + flags_value(c.flags, c.uid in self.recent)
            if self.condstore:
                item += b" MODSEQ (%d)" % c.modseq
            out.append(b"* %d FETCH (%b)\r\n" % (number, item))
        self.uidnext = max(self.uidnext, uidnext)
        self.known_modseq = max(self.known_modseq, highestmodseq)
        self.own_modseqs = {m for m in self.own_modseqs if m > self.known_modseq}
        return out
