"""Contexts due for an embedding (never embedded, or changed since) are found through a partial index:
the index group no longer embeds inline, a refresher in the same process polls for them.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
from sqlalchemy import text

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    bind = op.get_bind()
    vectors = bind.execute(
        text(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'contexts' AND column_name = 'embedded_at'"
        )
    ).first()
    if vectors:
        op.execute(
            "CREATE INDEX contexts_unembedded ON contexts (touched_at) "
            "WHERE embedded_at IS NULL OR embedded_at < touched_at"
        )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS contexts_unembedded")
