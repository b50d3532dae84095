"""A context that fails in a lifecycle pass, or whose embedding fails, is recorded and skipped for a
while instead of being retried at the head of every pass (where a few poison contexts would starve
the rest).

Revision ID: 0011
Revises: 0010
"""

from alembic import op
from sqlalchemy import text

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE contexts ADD COLUMN lifecycle_failed_at timestamptz,
                             ADD COLUMN lifecycle_error text,
                             ADD COLUMN lifecycle_failures integer NOT NULL DEFAULT 0;
        """
    )
    vectors = (
        op.get_bind()
        .execute(
            text(
                "SELECT 1 FROM information_schema.columns "
                "WHERE table_name = 'contexts' AND column_name = 'embedded_at'"
            )
        )
        .first()
    )
    if vectors:
        op.execute(
            "ALTER TABLE contexts ADD COLUMN embed_failed_at timestamptz, "
            "ADD COLUMN embed_failures integer NOT NULL DEFAULT 0"
        )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE contexts DROP COLUMN IF EXISTS lifecycle_failed_at,
                             DROP COLUMN IF EXISTS lifecycle_error,
                             DROP COLUMN IF EXISTS lifecycle_failures,
                             DROP COLUMN IF EXISTS embed_failed_at,
                             DROP COLUMN IF EXISTS embed_failures;
        """
    )
