"""Tokens get a public id (for ``token list`` and ``token revoke --id``) and a last-used time.

The id is derived from the token's hash (its first 8 bytes, hex): it names the token without
revealing anything that helps to guess it.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE api_tokens ADD COLUMN id text;
        UPDATE api_tokens SET id = 'tok_' || encode(substring(token_hash from 1 for 8), 'hex');
        ALTER TABLE api_tokens ALTER COLUMN id SET NOT NULL;
        CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
        CREATE INDEX api_tokens_tenant_name ON api_tokens (tenant, name);
        ALTER TABLE api_tokens ADD COLUMN last_used_at timestamptz;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS api_tokens_tenant_name;
        DROP INDEX IF EXISTS api_tokens_id;
        ALTER TABLE api_tokens DROP COLUMN IF EXISTS id, DROP COLUMN IF EXISTS last_used_at;
        """
    )
