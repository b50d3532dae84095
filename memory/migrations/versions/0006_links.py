"""Semantic dedup: near-duplicate contexts are linked, never merged.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE context_links (
            tenant      text NOT NULL,
            a           text NOT NULL,
            b           text NOT NULL,
            similarity  real NOT NULL,
            linked_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant, a, b),
            CHECK (a < b)
        );
        CREATE INDEX context_links_b ON context_links (tenant, b);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE context_links")
