"""Summaries say who made them and which events they cover: ``summary_by`` (extractive, anthropic,
sampling; NULL for the newest event line the index writes) and ``summary_events`` (the context's
event count when it was made). A model's summary survives re-indexing while it still covers every
event, and the archiver keeps a client-sampled one instead of making its own.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.execute("ALTER TABLE contexts ADD COLUMN summary_by text, ADD COLUMN summary_events integer")


def downgrade() -> None:
    op.execute("ALTER TABLE contexts DROP COLUMN summary_by, DROP COLUMN summary_events")
