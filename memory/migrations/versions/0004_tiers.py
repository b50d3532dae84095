"""Tiers: where a cold context's full archive lives, and when it moved.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE contexts
            ADD COLUMN archive_key text,
            ADD COLUMN tier_changed_at timestamptz,
            ADD COLUMN pinned boolean NOT NULL DEFAULT false,
            ADD COLUMN last_access_at timestamptz,
            ADD COLUMN touched_at timestamptz NOT NULL DEFAULT now();
        CREATE INDEX contexts_tier ON contexts (tier, updated_at);
        """
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE contexts DROP COLUMN archive_key, DROP COLUMN tier_changed_at, "
        "DROP COLUMN pinned, DROP COLUMN last_access_at, DROP COLUMN touched_at"
    )
