"""Whether a migration branch creates exactly the tables of its ``MetaData``: alembic's
autogenerate comparison, limited to those tables (each branch owns its own; the others'
tables are not differences)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData


def schema_drift(
    conn: Connection, metadata: MetaData, *, ignore: Callable[[Any], bool] = lambda d: False
) -> list[Any]:
    """The differences between the database behind ``conn`` and ``metadata``'s tables
    (empty when the migrations match them); ``ignore`` drops a difference the migration
    makes on purpose (a column or index only one database has, say)."""
    ours = set(metadata.tables)

    def concerns_us(d: Any) -> bool:
        if isinstance(d, list):
            return any(concerns_us(x) for x in d)
        if d[0].startswith("modify_"):
            return bool(d[2] in ours)
        table = getattr(d[1], "table", d[1])
        return getattr(table, "name", None) in ours

    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(ctx, metadata) if concerns_us(d) and not ignore(d)]
