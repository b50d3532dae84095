"""Alembic environment: plain SQL migrations, serialised across processes by an advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

# One arbitrary, fixed key: every Hookline process that migrates takes the same lock.
_MIGRATION_LOCK = 0x486F6F6B

url = context.config.get_main_option("sqlalchemy.url")
if url is None:
    raise RuntimeError("alembic needs sqlalchemy.url")

engine = create_engine(url)
with engine.connect() as connection:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
    connection.commit()
    try:
        context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
        connection.commit()
engine.dispose()
