"""Per-account data keys in the database, wrapped by the master key (ARCHITECTURE.md §4)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, insert, select, update

from mailstore.crypto import KEY_LEN, DataKeyCache, DecryptionError, MasterKeyring
from mailstore.tables import account_key


class KeyStore:
    """Creates, unwraps (with a cache) and re-wraps the data keys of accounts."""

    def __init__(self, ring: MasterKeyring) -> None:
        self.ring = ring
        self._cache = DataKeyCache(ring)

    def create(self, conn: Connection, account_id: int) -> AESGCM:
        data_key = secrets.token_bytes(KEY_LEN)
        mk_id, wrapped = self.ring.wrap(account_id, data_key)
        conn.execute(
            insert(account_key).values(
                account_id=account_id,
                master_key_id=mk_id,
                wrapped_key=wrapped,
                created_at=datetime.now(UTC),
            )
        )
        return self._cache.put(account_id, data_key)

    def cipher(self, conn: Connection, account_id: int) -> AESGCM:
        cached = self._cache.get(account_id)
        if cached is not None:
            return cached
        row = conn.execute(
            select(account_key.c.master_key_id, account_key.c.wrapped_key).where(
                account_key.c.account_id == account_id
            )
        ).first()
        if row is None:
            raise DecryptionError(f"account {account_id} has no data key")
        data_key = self.ring.unwrap(account_id, row.master_key_id, row.wrapped_key)
        return self._cache.put(account_id, data_key)

    def rotate(self, conn: Connection, new_ring: MasterKeyring) -> int:
        """Re-wrap every data key with ``new_ring``'s current key; return how many.

        The caller commits, then saves ``new_ring.only_current()`` as the key file. Until then
        the key file holds both keys, so a crash at any point leaves every data key readable.
        """
        rows = conn.execute(
            select(account_key.c.account_id, account_key.c.master_key_id, account_key.c.wrapped_key)
        ).all()
        now = datetime.now(UTC)
        for row in rows:
            data_key = new_ring.unwrap(row.account_id, row.master_key_id, row.wrapped_key)
            mk_id, wrapped = new_ring.wrap(row.account_id, data_key)
            conn.execute(
                update(account_key)
                .where(account_key.c.account_id == row.account_id)
                .values(master_key_id=mk_id, wrapped_key=wrapped, rewrapped_at=now)
            )
        self.ring = new_ring
        self._cache = DataKeyCache(new_ring)
        return len(rows)
