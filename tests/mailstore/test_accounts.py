"""Accounts, default mailboxes, passwords, and encrypted message storage on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from mailstore import accounts, messages
from mailstore.accounts import AccountError
from mailstore.crypto import DecryptionError, MasterKeyring
from mailstore.db import Database
from mailstore.keystore import KeyStore
from mailstore.tables import account, blob, mailbox


@pytest.fixture
def store(db_url: str):
    db = Database.open(db_url)
    ks = KeyStore(MasterKeyring.generate())
    yield db, ks
    db.close()


def test_create_account_with_special_use_mailboxes(store) -> None:
    db, ks = store
    acc = db.write_sync(lambda tx: accounts.create_account(
        tx.conn, ks, address="Claire.Martin@Demo.MSSante.fr", kind="professional",
        display_name="Claire Martin", password="long enough password"))
    assert acc.address == "claire.martin@demo.mssante.fr"
    rows = db.read_sync(lambda c: c.execute(
        select(mailbox.c.name, mailbox.c.special_use, mailbox.c.uidvalidity)
        .where(mailbox.c.account_id == acc.id)).all())
    uses = {r.name: r.special_use for r in rows}
    assert uses == {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                    "Junk": "\\Junk", "Archive": "\\Archive"}
    assert len({r.uidvalidity for r in rows}) == 6
    stored_hash = db.read_sync(lambda c: accounts.password_hash_of(c, acc.id))
    assert stored_hash is not None and stored_hash.startswith("$argon2id$")
    with pytest.raises(AccountError, match="already exists"):
        db.write_sync(lambda tx: accounts.create_account(
            tx.conn, ks, address="claire.martin@demo.mssante.fr", kind="professional"))


def test_password_change_and_disable_bump_credentials_version(store) -> None:
    db, ks = store
    acc = db.write_sync(lambda tx: accounts.create_account(
        tx.conn, ks, address="a@demo.mssante.fr", kind="professional", password="password-1"))
    acc2 = db.write_sync(lambda tx: accounts.set_password(tx.conn, acc.address, "password-2"))
    assert acc2.credentials_version == acc.credentials_version + 1
    acc3 = db.write_sync(lambda tx: accounts.set_state(tx.conn, acc.address, accounts.DISABLED))
    assert not acc3.active
    with pytest.raises(AccountError, match="at least 8"):
        db.write_sync(lambda tx: accounts.set_password(tx.conn, acc.address, "short"))


def test_message_round_trip_tamper_and_move_detected(store) -> None:
    db, ks = store

    def setup(tx):
        a = accounts.create_account(tx.conn, ks, address="a@d.fr", kind="professional")
        b = accounts.create_account(tx.conn, ks, address="b@d.fr", kind="professional")
        ia = accounts.mailbox_id(tx.conn, a.id, "INBOX")
        ib = accounts.mailbox_id(tx.conn, b.id, "inbox")
        assert ia is not None and ib is not None
        s1 = messages.append_message(tx, ks, a.id, ia, b"Subject: one\r\n\r\nfirst\r\n")
        s2 = messages.append_message(tx, ks, a.id, ia, b"Subject: two\r\n\r\nsecond\r\n")
        s3 = messages.append_message(tx, ks, b.id, ib, b"Subject: three\r\n\r\nthird\r\n")
        return a, b, s1, s2, s3

    a, b, s1, s2, s3 = db.write_sync(setup)
    assert (s1.uid, s2.uid) == (1, 2) and s2.modseq > s1.modseq
    body = db.read_sync(lambda c: messages.read_body(c, ks, a.id, s1.blob_id))
    assert body == b"Subject: one\r\n\r\nfirst\r\n"
    meta = db.read_sync(lambda c: messages.read_meta(c, ks, a.id, s1.blob_id))
    assert meta["headers"]["subject"] == "one"

    # Move s2's ciphertext into s1's row: detected, not silently decrypted.
    ct2 = db.read_sync(lambda c: c.execute(select(blob.c.body).where(blob.c.id == s2.blob_id)).scalar())
    db.write_sync(lambda tx: tx.conn.execute(update(blob).where(blob.c.id == s1.blob_id).values(body=ct2)))
    with pytest.raises(DecryptionError, match=s1.blob_id):
        db.read_sync(lambda c: messages.read_body(c, ks, a.id, s1.blob_id))
    # Another account's key cannot open it either.
    with pytest.raises(DecryptionError):
        db.read_sync(lambda c: messages.read_body(c, ks, b.id, s2.blob_id))
    # A flipped byte is detected.
    ct3 = bytearray(db.read_sync(lambda c: c.execute(select(blob.c.body).where(blob.c.id == s3.blob_id)).scalar()))
    ct3[-1] ^= 0xFF
    db.write_sync(lambda tx: tx.conn.execute(update(blob).where(blob.c.id == s3.blob_id).values(body=bytes(ct3))))
    with pytest.raises(DecryptionError, match="authentication failed"):
        db.read_sync(lambda c: messages.read_body(c, ks, b.id, s3.blob_id))


def test_key_rotation_rewraps_without_reencrypting(store) -> None:
    db, ks = store

    def setup(tx):
        a = accounts.create_account(tx.conn, ks, address="r@d.fr", kind="professional")
        inbox = accounts.mailbox_id(tx.conn, a.id, "INBOX")
        assert inbox is not None
        return a, messages.append_message(tx, ks, a.id, inbox, b"Subject: x\r\n\r\nkept\r\n")

    a, stored = db.write_sync(setup)
    before = db.read_sync(lambda c: c.execute(select(blob.c.body)).scalar())
    new_ring = ks.ring.with_new_current()
    assert db.write_sync(lambda tx: ks.rotate(tx.conn, new_ring)) == 1
    after = db.read_sync(lambda c: c.execute(select(blob.c.body)).scalar())
    assert before == after  # the message itself is untouched
    fresh = KeyStore(new_ring.only_current())  # the old master key is gone
    assert db.read_sync(lambda c: messages.read_body(c, fresh, a.id, stored.blob_id)) == (
        b"Subject: x\r\n\r\nkept\r\n"
    )
    assert db.read_sync(lambda c: c.execute(select(account.c.id)).scalar()) == a.id
