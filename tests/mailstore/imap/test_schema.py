"""The ``imap`` migration branch creates exactly the tables of mailstore/imap_tables.py."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from mailstore.db import create_db_engine
from mailstore.imap_tables import metadata


def test_migration_matches_the_tables(imap_db_url: str) -> None:
    ours = set(metadata.tables)

    def concerns_us(d: Any) -> bool:
        if isinstance(d, list):
            return any(concerns_us(x) for x in d)
        if d[0].startswith("modify_"):
            return bool(d[2] in ours)
        table = getattr(d[1], "table", d[1])
        return getattr(table, "name", None) in ours

    engine = create_db_engine(imap_db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert [d for d in compare_metadata(ctx, metadata) if concerns_us(d)] == []
        assert ours <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
