"""Alembic environment: runs migrations on the connection handed over by caducee.dbschema."""

from __future__ import annotations

from alembic import context

from caducee.dbschema import target_metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through caducee.dbschema
    raise RuntimeError("run migrations with `caducee db upgrade`")

context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
