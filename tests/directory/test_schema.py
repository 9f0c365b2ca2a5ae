"""The migration creates exactly the tables of directory/tables.py (and the search index)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from directory.tables import FTS_TABLE, metadata


def test_migration_matches_the_tables(engine: Engine) -> None:
    ours = set(metadata.tables)

    def concerns_us(d: Any) -> bool:
        if isinstance(d, list):
            return any(concerns_us(x) for x in d)
        if d[0].startswith("modify_"):
            return bool(d[2] in ours)
        obj = d[1]
        if (d[0] == "remove_column" and d[3].name == "tsv") or (
            d[0] == "remove_index" and obj.name == "ix_directory_doc_tsv"
        ):  # PostgreSQL's search vector, created by the migration only
            return False
        table = getattr(obj, "table", obj)
        return getattr(table, "name", None) in ours

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert [d for d in compare_metadata(ctx, metadata) if concerns_us(d)] == []
    names = set(inspect(engine).get_table_names())
    assert ours <= names
    if engine.dialect.name == "sqlite":
        assert FTS_TABLE in names
