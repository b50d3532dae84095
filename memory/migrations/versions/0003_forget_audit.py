"""forget() leaves an audit record that holds no payload: the subject only as a SHA-256 hash.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE forget_audit (
            id            bigserial PRIMARY KEY,
            tenant        text NOT NULL,
            context_id    text NOT NULL,
            subject_hash  text NOT NULL,
            requested_at  timestamptz NOT NULL DEFAULT now(),
            counts        jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX forget_audit_tenant ON forget_audit (tenant, requested_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE forget_audit")
