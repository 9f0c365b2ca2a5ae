"""SQLAlchemy Core tables of IMAP mailbox semantics beyond :mod:`mailstore.tables`.

On their own MetaData (migration ``caducee/migrations/versions/imap_0001_*``):

* ``mailbox_uidvalidity`` keeps, per account, the highest UIDVALIDITY a deleted mailbox
  had. A mailbox created later (the same name again, RFC 3501 §6.3.4) then gets a strictly
  greater value (§2.3.1.1) even when it is re-created within the same second — the
  deleted row, which held that value, is gone. Dovecot keeps the same counter in its
  ``dovecot-uidvalidity`` file. No foreign key (the account is referred to by id).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table

from mailstore.tables import NAMING

metadata = MetaData(naming_convention=NAMING)

mailbox_uidvalidity = Table(
    "mailbox_uidvalidity",
    metadata,
    Column("account_id", Integer, primary_key=True, autoincrement=False),
    Column("highest_deleted", BigInteger, nullable=False),
)
