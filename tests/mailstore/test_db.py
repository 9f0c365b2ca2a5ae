"""The group-commit writer: batching, isolation of failing jobs, after-commit hooks."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select

from mailstore.db import Database, Tx

meta = MetaData()
scratch = Table("scratch", meta, Column("id", Integer, primary_key=True), Column("v", String(20)))


@pytest.fixture
def db(db_url: str):
    database = Database.open(db_url)
    meta.create_all(database.engine)
    yield database
    database.close()


async def test_concurrent_writes_share_commits_and_all_land(db: Database) -> None:
    async def one(i: int) -> int:
        return await db.write(
            lambda tx: tx.conn.execute(insert(scratch).values(v=f"v{i}")).inserted_primary_key[0]  # type: ignore[index]
        )

    ids = await asyncio.gather(*(one(i) for i in range(300)))
    assert len(set(ids)) == 300
    count = await db.read(lambda c: c.execute(select(func.count()).select_from(scratch)).scalar())
    assert count == 300
    assert db.commits < 300  # batched: fewer commits than jobs
    assert db.jobs_committed >= 300


async def test_a_failing_job_is_rolled_back_alone(db: Database) -> None:
    def good(tx: Tx) -> None:
        tx.conn.execute(insert(scratch).values(v="good"))

    def bad(tx: Tx) -> None:
        tx.conn.execute(insert(scratch).values(v="bad"))
        raise ValueError("refused")

    results = await asyncio.gather(
        db.write(good), db.write(bad), db.write(good), return_exceptions=True
    )
    assert isinstance(results[1], ValueError)
    rows = await db.read(lambda c: [r.v for r in c.execute(select(scratch.c.v))])
    assert sorted(rows) == ["good", "good"]


async def test_after_commit_runs_only_after_success(db: Database) -> None:
    seen: list[str] = []

    def job(tx: Tx) -> None:
        tx.conn.execute(insert(scratch).values(v="x"))
        tx.after_commit(lambda: seen.append("committed"))

    def failing(tx: Tx) -> None:
        tx.after_commit(lambda: seen.append("never"))
        raise RuntimeError

    await db.write(job)
    with pytest.raises(RuntimeError):
        await db.write(failing)
    assert seen == ["committed"]


def test_sync_write_from_a_thread(db: Database) -> None:
    assert db.write_sync(lambda tx: 41 + 1) == 42
