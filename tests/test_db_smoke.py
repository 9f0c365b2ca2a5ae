from sqlalchemy import inspect

from mailstore.db import create_db_engine


def test_migrations_create_tables(db_url: str) -> None:
    engine = create_db_engine(db_url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"account", "mailbox", "message", "blob", "account_key"} <= names
