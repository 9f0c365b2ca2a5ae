"""A bounded in-memory cache of what IMAP needs again and again from a message's index.

Blobs never change, so the ENVELOPE, BODY and BODYSTRUCTURE of a blob (a few hundred
bytes, computed at delivery, :mod:`mailstore.mime_index`) can be kept after a first FETCH:
``FETCH 1:* (FLAGS UID ENVELOPE)`` — what every client does when it opens a mailbox — then
reads only the ``message`` rows. The renderings are kept as ``bytes``, ready to splice into
a response. Beside them, :attr:`Structure.reads` keeps what the patient-read journal needs
(the Message-ID and the INS-shaped addresses of the originator and recipient fields), so
reading a message's content does not decrypt and parse its whole index each time.

The cache holds header data in clear in memory, like any answer being served; it is
bounded (least recently used entries go) and can be disabled with a size of 0.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

#: Header fields whose addresses can name a patient reader (ARCHITECTURE.md §2 flow 6).
_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "sender", "reply-to"})
#: A patient address: the 15-character INS matricule at some domain (DOMAIN.md §2).
_PATIENT_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9.+_-])([0-9AB]{15})@([A-Za-z0-9.-]+)", re.IGNORECASE
)


class Structure:
    """What the cache keeps of one blob's index."""

    __slots__ = ("body", "bodystructure", "envelope", "reads")

    def __init__(self, envelope: bytes, body: bytes, bodystructure: bytes,
                 reads: tuple[str | None, tuple[tuple[str, str], ...]]) -> None:
        self.envelope = envelope
        self.body = body
        self.bodystructure = bodystructure
        #: ``(message_id, ((INS upper-case, host lower-case), ...))``.
        self.reads = reads


def _latin1(value: Any) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value or b"")


def patient_refs(meta: Mapping[str, Any]) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The Message-ID and the INS-shaped addresses of From/To/Cc/Sender/Reply-To."""
    found: set[tuple[str, str]] = set()
    message_id = None
    for name, value in meta.get("fields", ()):
        if name in _ADDRESS_FIELDS:
            for local, host in _PATIENT_ADDRESS.findall(value):
                found.add((local.upper(), host.lower()))
        elif name == "message-id" and message_id is None:
            message_id = value.strip()[:200]
    return message_id, tuple(sorted(found))


def structure_of(meta: Mapping[str, Any]) -> Structure:
    """The cached form of a decrypted index."""
    return Structure(
        _latin1(meta.get("envelope")), _latin1(meta.get("body")),
        _latin1(meta.get("bodystructure")), patient_refs(meta),
    )


class StructureCache:
    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, Structure] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, blob_id: str) -> Structure | None:
        return self.get_many((blob_id,))[0]

    def get_many(self, blob_ids: Iterable[str]) -> list[Structure | None]:
        """The entries of ``blob_ids`` (``None`` where missing), under one lock."""
        if self.max_entries <= 0:
            return [None for _ in blob_ids]
        out: list[Structure | None] = []
        with self._lock:
            data = self._data
            get, touch = data.get, data.move_to_end
            for blob_id in blob_ids:
                found = get(blob_id)
                if found is not None:
                    touch(blob_id)
                out.append(found)
            hits = sum(1 for x in out if x is not None)
            self.hits += hits
            self.misses += len(out) - hits
        return out

    def put(self, blob_id: str, meta: Mapping[str, Any]) -> Structure:
        """Keep the structure part of a decrypted index ``meta``; return it."""
        entry = structure_of(meta)
        if self.max_entries <= 0:
            return entry
        with self._lock:
            self._data[blob_id] = entry
            self._data.move_to_end(blob_id)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._data)
