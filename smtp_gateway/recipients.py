"""Resolving envelope recipients to local mailboxes, with a short cache.

RCPT TO happens for every message; the lookup (account, its INBOX) is read through the
reader pool and cached for a few seconds so a busy sender does not hit the database for
each recipient. A disabled account stops receiving within the cache lifetime.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection

from mailstore import accounts
from mailstore.db import Database
from smtp_gateway.delivery import LocalRecipient


class RecipientResolver:
    def __init__(
        self, db: Database, *, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, LocalRecipient | None]] = {}

    async def resolve(self, address: str) -> LocalRecipient | None:
        """The local, active recipient for ``address``, or None if there is none."""
        key = address.lower()
        hit = self._cache.get(key)
        now = self.clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.db.read(lambda conn: lookup(conn, key))
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = (now + self.ttl, found)
        return found

    def forget(self, address: str | None = None) -> None:
        if address is None:
            self._cache.clear()
        else:
            self._cache.pop(address.lower(), None)


def lookup(conn: Connection, address: str) -> LocalRecipient | None:
    acc = accounts.get_by_address(conn, address)
    if acc is None or acc.state == accounts.DISABLED:
        return None
    inbox = accounts.mailbox_id(conn, acc.id, "INBOX")
    if inbox is None:
        return None
    return LocalRecipient(acc.address, acc.id, inbox, acc.kind, acc.ins)
