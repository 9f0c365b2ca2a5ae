"""The queue's storage on SQLite and PostgreSQL: encryption at rest, leases, SKIP LOCKED,
deferral, cleanup; and the retry schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from mailstore import accounts
from mailstore.crypto import DecryptionError, MasterKeyring
from mailstore.db import Database
from mailstore.keystore import KeyStore
from mailstore.queue_tables import queue_entry, queue_message
from smtp_gateway import queue_store
from smtp_gateway.queue_runner import retry_delay

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
RAW = b"From: a@demo.mssante.fr\r\nSubject: Bilan sanguin Dupont\r\n\r\nGlycemie 1.2 g/L\r\n"


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[Database, KeyStore, int]]:
    db = Database.open(db_url)
    keystore = KeyStore(MasterKeyring.generate())
    acc = db.write_sync(lambda tx: accounts.create_account(
        tx.conn, keystore, address="a@demo.mssante.fr", kind="professional"))
    yield db, keystore, acc.id
    db.close()


def enqueue(db: Database, keystore: KeyStore, account_id: int, recipients: list[str],
            raw: bytes = RAW, queue_id: str = "Q1", now: datetime = NOW) -> list[int]:
    return db.write_sync(lambda tx: queue_store.enqueue(
        tx.conn, keystore, account_id=account_id, sender="a@demo.mssante.fr",
        recipients=recipients, raw=raw, queue_id=queue_id, message_id=f"<{queue_id}@x>",
        now=now, max_age=timedelta(days=5)))


def test_one_encrypted_copy_for_all_recipients(store) -> None:
    db, keystore, acc = store
    ids = enqueue(db, keystore, acc, ["x@autre.mssante.fr", "y@ailleurs.mssante.fr"])
    assert len(ids) == 2
    bodies = db.read_sync(lambda c: c.execute(select(queue_message.c.body)).scalars().all())
    assert len(bodies) == 1 and b"Glycemie" not in bodies[0] and b"Dupont" not in bodies[0]
    listed = db.read_sync(queue_store.list_entries)
    assert [(e.recipient, e.domain, e.state, e.attempts) for e in listed] == [
        ("x@autre.mssante.fr", "autre.mssante.fr", "queued", 0),
        ("y@ailleurs.mssante.fr", "ailleurs.mssante.fr", "queued", 0),
    ]
    assert listed[0].expires_at == NOW + timedelta(days=5)
    assert db.read_sync(lambda c: queue_store.read_body(c, keystore, listed[0].message_ref)) == RAW


def test_a_ciphertext_moved_to_another_row_does_not_open(store) -> None:
    db, keystore, acc = store
    enqueue(db, keystore, acc, ["x@autre.mssante.fr"], queue_id="Q1")
    enqueue(db, keystore, acc, ["x@autre.mssante.fr"], raw=b"Subject: other\r\n\r\n.\r\n",
            queue_id="Q2")
    rows = db.read_sync(lambda c: c.execute(
        select(queue_message.c.id, queue_message.c.body).order_by(queue_message.c.queue_id)
    ).all())
    db.write_sync(lambda tx: tx.conn.execute(
        update(queue_message).where(queue_message.c.id == rows[1].id).values(body=rows[0].body)))
    with pytest.raises(DecryptionError):
        db.read_sync(lambda c: queue_store.read_body(c, keystore, rows[1].id))


def test_claim_leases_until_the_lease_ends(store) -> None:
    db, keystore, acc = store
    enqueue(db, keystore, acc, ["x@autre.mssante.fr", "y@autre.mssante.fr"])
    lease = timedelta(minutes=15)
    first = db.write_sync(lambda tx: queue_store.claim(tx.conn, now=NOW, lease=lease,
                                                       owner="node-a"))
    assert [(e.state, e.lease_owner, e.next_attempt) for e in first] == \
        [("active", "node-a", NOW + lease)] * 2
    again = db.write_sync(lambda tx: queue_store.claim(tx.conn, now=NOW + lease / 2,
                                                       lease=lease, owner="node-b"))
    assert again == []
    # node-a died: after its lease the entries are due again, for another node.
    later = NOW + lease + timedelta(seconds=1)
    taken = db.write_sync(lambda tx: queue_store.claim(tx.conn, now=later, lease=lease,
                                                       owner="node-b", limit=1))
    assert [e.lease_owner for e in taken] == ["node-b"]
    assert db.read_sync(queue_store.next_due) == later - timedelta(seconds=1)


def test_defer_finish_and_cleanup(store) -> None:
    db, keystore, acc = store
    enqueue(db, keystore, acc, ["x@autre.mssante.fr", "y@autre.mssante.fr"])
    a, b = db.write_sync(lambda tx: queue_store.claim(tx.conn, now=NOW,
                                                      lease=timedelta(minutes=1), owner="n"))
    db.write_sync(lambda tx: queue_store.defer(tx.conn, a, now=NOW,
                                               next_attempt=NOW + timedelta(minutes=5),
                                               error="mx: 451 4.3.0 later", owner="n"))
    db.write_sync(lambda tx: queue_store.finish(tx.conn, [b]))
    (left,) = db.read_sync(queue_store.list_entries)
    assert (left.id, left.attempts, left.state, left.last_error, left.lease_owner) == \
        (a.id, 1, "queued", "mx: 451 4.3.0 later", None)
    assert left.next_attempt == NOW + timedelta(minutes=5)
    assert db.read_sync(lambda c: c.execute(select(queue_message.c.id)).all())  # still needed
    db.write_sync(lambda tx: queue_store.finish(tx.conn, [left]))
    assert db.read_sync(queue_store.count) == 0
    assert db.read_sync(lambda c: c.execute(select(queue_message.c.id)).all()) == []


def test_make_due_retry_and_flush(store) -> None:
    db, keystore, acc = store
    ids = enqueue(db, keystore, acc, ["x@autre.mssante.fr", "y@autre.mssante.fr"])
    db.write_sync(lambda tx: tx.conn.execute(
        update(queue_entry).values(next_attempt=NOW + timedelta(hours=2))))
    assert db.write_sync(lambda tx: queue_store.make_due(tx.conn, now=NOW,
                                                         entry_ids=[ids[0]])) == 1
    assert db.read_sync(lambda c: queue_store.get_entry(c, ids[0])).next_attempt == NOW
    assert db.write_sync(lambda tx: queue_store.make_due(tx.conn, now=NOW)) == 2
    assert db.read_sync(lambda c: queue_store.get_entry(c, 999_999)) is None


def test_concurrent_claims_never_share_an_entry(store, backend: str) -> None:
    """PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets two nodes claim at once, disjointly."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer: claims are serialised by the database lock")
    db, keystore, acc = store
    enqueue(db, keystore, acc, [f"r{i}@autre.mssante.fr" for i in range(6)])
    lease = timedelta(minutes=5)
    with db.engine.connect() as one, db.engine.connect() as two:
        one.begin()
        two.begin()
        two.execute(text("SET lock_timeout = '5s'"))
        a = queue_store.claim(one, now=NOW, lease=lease, owner="a", limit=4)
        b = queue_store.claim(two, now=NOW, lease=lease, owner="b", limit=4)  # skips a's rows
        one.commit()
        two.commit()
    assert len(a) == 4 and len(b) == 2
    assert not {e.id for e in a} & {e.id for e in b}


def test_retry_schedule() -> None:
    schedule = (60.0, 300.0, 900.0, 3600.0, 7200.0)
    assert [retry_delay(n, schedule).total_seconds() for n in range(1, 8)] == [
        60, 300, 900, 3600, 7200, 7200, 7200]
    with pytest.raises(ValueError):
        retry_delay(1, ())
