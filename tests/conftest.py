"""Shared fixtures: databases on SQLite *and* a real PostgreSQL, and the crash detector."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import PostgresServer

if TYPE_CHECKING:
    from mailstore.db import Database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fresh_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'caducee.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend under test; storage-touching tests run on both."""
    return str(request.param)


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A fresh, empty database (no schema)."""
    return _fresh_url(request, backend, tmp_path)


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A fresh database with every migration applied."""
    from caducee.dbschema import upgrade
    from mailstore.db import create_db_engine

    engine = create_db_engine(empty_db_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return empty_db_url



@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """The store's :class:`~mailstore.db.Database` (group-commit writer, two readers) on
    ``db_url``."""
    from mailstore.db import Database, create_db_engine

    database = Database(create_db_engine(db_url), readers=2)
    try:
        yield database
    finally:
        database.close()

@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database, for tests that only need *a* store."""
    from caducee.dbschema import upgrade
    from mailstore.db import create_db_engine

    url = f"sqlite:///{tmp_path / 'caducee.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


class _CrashCatcher(logging.Handler):
    """Records every log record that carries an exception (an unhandled handler crash)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not getattr(record, "expected", False):
            self.records.append(record)


@pytest.fixture(autouse=True)
def fail_on_server_crash(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which any in-process server logged an unhandled exception.

    Mark a test ``@pytest.mark.allow_crash`` when it provokes one on purpose.
    """
    catcher = _CrashCatcher()
    root = logging.getLogger()
    root.addHandler(catcher)
    try:
        yield
    finally:
        root.removeHandler(catcher)
    if catcher.records and request.node.get_closest_marker("allow_crash") is None:
        first = catcher.records[0]
        pytest.fail(
            f"a server logged an unhandled exception: {first.getMessage()}\n"
            + logging.Formatter().formatException(first.exc_info)  # type: ignore[arg-type]
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_crash: the test provokes a logged server crash")


