"""The ``imap`` migration branch creates exactly the tables of mailstore/imap_tables.py."""

from __future__ import annotations

from sqlalchemy import inspect

from mailstore.db import create_db_engine
from mailstore.imap_tables import metadata
from tests.support.schema import schema_drift


def test_migration_matches_the_tables(imap_db_url: str) -> None:
    engine = create_db_engine(imap_db_url)
    try:
        with engine.connect() as conn:
            assert schema_drift(conn, metadata) == []
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
