"""A bounded in-memory cache of the IMAP renderings of message structure.

Blobs never change, so the ENVELOPE, BODY and BODYSTRUCTURE of a blob (a few hundred
bytes, computed at delivery, :mod:`mailstore.mime_index`) can be kept after a first FETCH:
``FETCH 1:* (FLAGS UID ENVELOPE)`` — what every client does when it opens a mailbox — then
reads only the ``message`` rows. The cache holds header data in clear in memory, like any
answer being served; it is bounded (least recently used entries go) and can be disabled
with a size of 0.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

#: The index keys the cache keeps.
STRUCTURE_KEYS = ("envelope", "body", "bodystructure")


class StructureCache:
    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, blob_id: str) -> dict[str, Any] | None:
        if self.max_entries <= 0:
            return None
        with self._lock:
            found = self._data.get(blob_id)
            if found is None:
                self.misses += 1
                return None
            self._data.move_to_end(blob_id)
            self.hits += 1
            return found

    def put(self, blob_id: str, meta: dict[str, Any]) -> dict[str, Any]:
        """Keep the structure part of ``meta``; return it."""
        small = {k: meta[k] for k in STRUCTURE_KEYS if k in meta}
        if self.max_entries <= 0:
            return small
        with self._lock:
            self._data[blob_id] = small
            self._data.move_to_end(blob_id)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
        return small

    def __len__(self) -> int:
        return len(self._data)
