"""Schema management: Alembic migrations over every package's tables (`caducee db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, inspect


def target_metadata() -> list[MetaData]:
    """The metadata of every package that owns tables (for autogenerate and checks)."""
    import audit.tables
    import directory.tables
    import mailstore.imap_tables
    import mailstore.policy_tables
    import mailstore.queue_tables
    import mailstore.tables

    return [
        mailstore.tables.metadata, audit.tables.metadata, mailstore.policy_tables.metadata,
        directory.tables.metadata, mailstore.queue_tables.metadata,
        mailstore.imap_tables.metadata,
    ]


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the database to ``revision`` (default: the latest)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_initialised(engine: Engine) -> bool:
    return "alembic_version" in inspect(engine).get_table_names()
