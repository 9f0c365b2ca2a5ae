"""The migration creates exactly the tables of directory/tables.py (and the search index)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, inspect

from directory.tables import FTS_TABLE, metadata
from tests.support.schema import schema_drift


def _search_vector(d: Any) -> bool:
    """PostgreSQL's search vector, created by the migration only."""
    return bool(d[0] == "remove_column" and d[3].name == "tsv") or bool(
        d[0] == "remove_index" and d[1].name == "ix_directory_doc_tsv"
    )


def test_migration_matches_the_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        assert schema_drift(conn, metadata, ignore=_search_vector) == []
    names = set(inspect(engine).get_table_names())
    assert set(metadata.tables) <= names
    if engine.dialect.name == "sqlite":
        assert FTS_TABLE in names
