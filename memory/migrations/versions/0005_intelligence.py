"""Intelligence: access counts, daily roll-ups, and — where pgvector exists — embeddings with an
HNSW index.

PostgreSQL servers without pgvector (e.g. Debian's) get everything but the embedding column; search
then runs on full text alone. The embedded PostgreSQL bundles pgvector.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"

DIM = 384


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE contexts ADD COLUMN access_count integer NOT NULL DEFAULT 0;
        CREATE TABLE rollups (
            tenant      text NOT NULL,
            source      text NOT NULL,
            day         date NOT NULL,
            summary     text NOT NULL,
            contexts    integer NOT NULL,
            events      integer NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant, source, day)
        );
        """
    )
    bind = op.get_bind()
    available = bind.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    if available:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
        op.execute(
            f"ALTER TABLE contexts ADD COLUMN embedding vector({DIM}), ADD COLUMN embedded_at timestamptz"
        )
        op.execute("CREATE INDEX contexts_embedding ON contexts USING hnsw (embedding vector_cosine_ops)")


def downgrade() -> None:
    op.execute("DROP TABLE rollups")
    op.execute("ALTER TABLE contexts DROP COLUMN access_count")
    op.execute("ALTER TABLE contexts DROP COLUMN IF EXISTS embedding, DROP COLUMN IF EXISTS embedded_at")
