"""IMAP fixtures: a migrated database per test (cloned from a template migrated once per
session, on SQLite and on PostgreSQL) and an in-process server on free ports."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailstore.imap.harness import ImapHarness
from tests.support.postgres import PostgresServer


def _migrate(url: str) -> None:
    from caducee.dbschema import upgrade
    from mailstore.db import create_db_engine

    engine = create_db_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("imap-template") / "template.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _pg_template(pg_server: PostgresServer) -> str:
    url = str(pg_server.create_database())
    _migrate(url)
    return url.rsplit("/", 1)[1]


@pytest.fixture
def imap_db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A fresh migrated database on ``backend`` (both backends run every test)."""
    if backend == "sqlite":
        path = tmp_path / "caducee.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    import psycopg

    template = str(request.getfixturevalue("_pg_template"))
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return str(server.url(name))


@pytest.fixture
def imap_server(imap_db_url: str) -> Iterator[ImapHarness]:
    """An IMAP server on free ports over a fresh database (SQLite and PostgreSQL)."""
    harness = ImapHarness(imap_db_url).start()
    try:
        yield harness
    finally:
        harness.stop()
