"""Database access: engine creation, the group-commit writer and the reader pool.

Design (ARCHITECTURE.md §4 and §10):

* SQLite in WAL mode with ``synchronous=FULL`` by default, PostgreSQL (psycopg 3) by URL.
  The same SQLAlchemy Core code runs on both.
* **One writer** owns the write connection. Callers submit write jobs (plain functions of a
  :class:`Tx`); the writer thread drains every job waiting, runs them in one shared
  transaction, commits (one fsync for the whole batch), and only then resolves each
  caller's future. A job that raises is rolled back alone (the batch is replayed with one
  SAVEPOINT per job); a failed commit fails the whole batch. This is *group commit*:
  many concurrent SMTP transactions share one fsync, and nobody is told "done" before the
  data is durable.
* Reads run on a small thread pool, each on its own pooled connection (SQLite WAL lets
  readers proceed while the writer commits).
* After-commit callbacks (IDLE notifications, queue wake-ups) run on the event loop once the
  commit that carried the job has succeeded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How many jobs one group commit may carry at most.
DEFAULT_BATCH_MAX = 512


class StorageUnavailable(Exception):
    """The database could not be reached or the commit failed (answer 451 4.3.0 / NO)."""


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and pick the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_db_engine(url: str, *, pool_size: int = 8) -> Engine:
    """Create an engine with the settings Caducée relies on.

    SQLite: WAL, ``synchronous=FULL`` (a commit is fsynced), foreign keys on, a busy
    timeout, and explicit ``BEGIN`` handling so SAVEPOINTs work (the pysqlite driver's own
    transaction handling is disabled, as SQLAlchemy's documentation recommends).
    Connections opened with the execution option ``sqlite_immediate=True`` start their
    transactions with ``BEGIN IMMEDIATE`` to take the write lock up front.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("sqlite_immediate"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@dataclass
class Tx:
    """What a write job sees: the connection inside the batch's transaction, and an
    after-commit hook."""

    conn: Connection
    _after: list[Callable[[], None]] = field(default_factory=list)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop once this job's commit succeeded."""
        self._after.append(callback)


@dataclass
class _Job:
    fn: Callable[[Tx], Any]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]


_STOP = object()


class Database:
    """An engine plus the single group-commit writer and a reader pool."""

    def __init__(
        self, engine: Engine, *, readers: int = 4, batch_max: int = DEFAULT_BATCH_MAX
    ) -> None:
        self.engine = engine
        self.batch_max = batch_max
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=readers, thread_name_prefix="db-read"
        )
        self._writer: threading.Thread | None = None
        self._closed = False
        #: Counters for metrics and benchmarks.
        self.commits = 0
        self.jobs_committed = 0

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> Database:
        return cls(create_db_engine(url), **kwargs)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="db-writer", daemon=True)
            self._writer.start()

    def close(self) -> None:
        """Finish every submitted write, then stop the threads and dispose of the engine."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._jobs.put(_STOP)
            self._writer.join()
        self._readers.shutdown(wait=True)
        self.engine.dispose()

    # -- public API ------------------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in the next group commit; return its result once committed."""
        if self._closed:
            raise StorageUnavailable("database is closed")
        self.start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, loop, fut))
        return await fut

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        """Blocking variant of :meth:`write` for threads and command-line tools."""
        if self._closed:
            raise StorageUnavailable("database is closed")
        self.start()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put(_Job(fn, None, fut))
        return fut.result()

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` with a read connection on the reader pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        return self._run_read(fn)

    def _run_read(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            try:
                return fn(conn)
            finally:
                conn.rollback()

    # -- the writer thread -----------------------------------------------------------------

    def _write_loop(self) -> None:
        conn: Connection | None = None
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is _STOP:
                break
            batch: list[_Job] = [first]  # type: ignore[list-item]
            while len(batch) < self.batch_max:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            try:
                if conn is None:
                    conn = self.engine.connect().execution_options(sqlite_immediate=True)
                self._run_batch(conn, batch)
            except Exception as exc:  # the connection itself failed: fail the batch
                log.exception("group commit failed")
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        log.debug("closing a broken connection failed", exc_info=True)
                    conn = None
                err = StorageUnavailable(f"commit failed: {exc.__class__.__name__}")
                for job in batch:
                    self._resolve(job, None, err, [])
        if conn is not None:
            conn.close()

    def _run_batch(self, conn: Connection, batch: list[_Job]) -> None:
        """Run a batch in one transaction and commit once.

        Optimistic first: no SAVEPOINT per job (two statements saved per job). If a job
        raises, the whole transaction is rolled back and the batch runs again with one
        SAVEPOINT per job, so only the failing job is lost. Jobs are plain functions of the
        transaction, so running one twice is harmless.
        """
        results: list[tuple[_Job, Any, BaseException | None, list[Callable[[], None]]]] = []
        failed: BaseException | None = None
        with conn.begin() as trans:
            for job in batch:
                tx = Tx(conn)
                try:
                    value = job.fn(tx)
                except Exception as exc:
                    failed = exc
                    trans.rollback()
                    break
                results.append((job, value, None, tx._after))
        if failed is not None:
            if len(batch) == 1:
                results = [(batch[0], None, failed, [])]
            else:
                results = self._run_isolated(conn, batch)
        self.commits += 1
        self.jobs_committed += len(batch)
        for job, value, failure, after in results:
            self._resolve(job, value, failure, after)

    def _run_isolated(
        self, conn: Connection, batch: list[_Job]
    ) -> list[tuple[_Job, Any, BaseException | None, list[Callable[[], None]]]]:
        results: list[tuple[_Job, Any, BaseException | None, list[Callable[[], None]]]] = []
        with conn.begin():
            for job in batch:
                tx = Tx(conn)
                savepoint = conn.begin_nested()
                try:
                    value = job.fn(tx)
                except Exception as exc:  # the job's own failure: roll back that job only
                    savepoint.rollback()
                    results.append((job, None, exc, []))
                else:
                    savepoint.commit()
                    results.append((job, value, None, tx._after))
        return results

    @staticmethod
    def _resolve(
        job: _Job, value: Any, exc: BaseException | None, after: list[Callable[[], None]]
    ) -> None:
        if job.loop is None:
            cfut = job.future
            assert isinstance(cfut, concurrent.futures.Future)
            for cb in after:
                cb()
            if exc is not None:
                cfut.set_exception(exc)
            else:
                cfut.set_result(value)
            return
        afut = job.future
        assert isinstance(afut, asyncio.Future)

        def _deliver() -> None:
            for cb in after:
                try:
                    cb()
                except Exception:
                    log.exception("after-commit callback failed")
            if afut.cancelled():
                return
            if exc is not None:
                afut.set_exception(exc)
            else:
                afut.set_result(value)

        try:
            job.loop.call_soon_threadsafe(_deliver)
        except RuntimeError:  # loop closed: nobody is waiting any more
            log.debug("event loop closed before a write result could be delivered")
