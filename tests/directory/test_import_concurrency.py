"""Imports beside other writers (both backends unless said).

Two imports started together land one after the other, each as one transaction, in the
order of their ids: the directory ends as if they had run in turn. On SQLite an import
reads and checks its files without locking the database (the server keeps writing mail),
and its merge waits for a writer's lock instead of failing.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from benchmarks import gen_extract
from caducee.dbschema import upgrade
from directory.importer import ImportResult, Progress
from mailstore.db import create_db_engine
from tests.directory.conftest import run_import
from tests.directory.test_import import dump

#: Longest wait for the other thread (a hang fails the test instead of blocking it).
DEADLINE = 60.0


def _extract(tmp: Path, seed: int) -> list[Path]:
    person, mailbox, _ = gen_extract.generate(tmp, person_lines=300, mailbox_lines=120,
                                              seed=seed)
    return [person, mailbox]


@pytest.fixture
def reference(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[Engine]:
    """A second, empty directory, on the same backend."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'reference.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database()
    engine = create_db_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _in_thread(target: Callable[[], ImportResult]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(target())
        except BaseException as exc:  # handed to the test's thread
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _result(thread: threading.Thread, out: list[object]) -> ImportResult:
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the import did not finish"
    (res,) = out
    if isinstance(res, BaseException):
        raise res
    assert isinstance(res, ImportResult)
    return res


def test_two_imports_at_once_land_one_after_the_other(
    engine: Engine, reference: Engine, tmp_path: Path
) -> None:
    """Both reach their merge together (a barrier in their progress callbacks); one merges
    while the other waits (SQLite's write lock, PostgreSQL's advisory lock); the second
    then sees the first's directory and retires what its own extract lacks."""
    files = {"a": _extract(tmp_path / "a", 11), "b": _extract(tmp_path / "b", 12)}
    at_merge = threading.Barrier(2, timeout=DEADLINE)

    def progress(p: Progress) -> None:
        if p.phase == "merge":
            at_merge.wait()

    runs = {name: _in_thread(functools.partial(run_import, engine, *paths, progress=progress))
            for name, paths in files.items()}
    results = {name: _result(*run) for name, run in runs.items()}
    first, second = sorted(results, key=lambda n: results[n].import_id)
    assert results[first].import_id < results[second].import_id
    assert results[first].merge.index == "full"
    assert results[second].merge.practitioners.deactivated > 0  # the first one's, absent
    # the same directory as the two imports in turn, in the order of their ids
    run_import(reference, *files[first])
    run_import(reference, *files[second])
    assert dump(engine) == dump(reference)
    with engine.connect() as conn:
        logged = conn.execute(text("SELECT id FROM directory_import ORDER BY id")).scalars()
        assert list(logged) == [results[first].import_id, results[second].import_id]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("fresh_index", [False, True], ids=["rebuild", "helper"])
def test_the_server_writes_while_an_import_reads_and_its_merge_waits_for_a_writer(
    engine: Engine, db_url: str, tmp_path: Path, fresh_index: bool
) -> None:
    """With the first import's index helper too, whose merge begins with a deferred
    ``BEGIN`` (its first statement takes the lock)."""
    files = _extract(tmp_path / "x", 13)
    path = db_url.removeprefix("sqlite:///")
    writer = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    released: list[float] = []
    wrote_while_reading: list[bool] = []

    def progress(p: Progress) -> None:
        if p.phase == "read" and not wrote_while_reading:
            wrote_while_reading.append(True)
            # no lock held while the files are read: a writer that does not wait at all
            # gets the database
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO trusted_domain (domain, source, added_at) "
                           "VALUES ('pendant-la-lecture.fr', 'test', '2026-12-02')")
            writer.execute("COMMIT")
        elif p.phase == "merge":
            # a writer holds the lock when the merge starts: the merge waits for it
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO trusted_domain (domain, source, added_at) "
                           "VALUES ('pendant-la-fusion.fr', 'test', '2026-12-02')")

            def release() -> None:
                released.append(time.monotonic())
                writer.execute("COMMIT")

            threading.Timer(0.5, release).start()

    thread, out = _in_thread(
        lambda: run_import(engine, *files, progress=progress, fresh_index=fresh_index)
    )
    res = _result(thread, out)
    done = time.monotonic()
    writer.close()
    assert released and released[0] < done
    assert res.merge.practitioners.added > 0 and res.merge.index == "full"
    with engine.connect() as conn:
        domains = set(conn.execute(text("SELECT domain FROM trusted_domain")).scalars())
        imported = conn.execute(text("SELECT count(*) FROM directory_import")).scalar_one()
    assert {"pendant-la-lecture.fr", "pendant-la-fusion.fr"} <= domains
    assert imported == 1
