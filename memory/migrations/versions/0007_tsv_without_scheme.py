"""Full text: index the subject without its provider scheme ("github:"), which every context of a
provider shares — it made the word "github" match every row and full-text ranking slow.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.execute(
        """
        DROP INDEX contexts_tsv;
        ALTER TABLE contexts DROP COLUMN tsv;
        ALTER TABLE contexts ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', coalesce(title, '')), 'A')
            || setweight(to_tsvector('english', regexp_replace(coalesce(subject, ''), '^[a-z]+:', '')), 'A')
            || setweight(to_tsvector('english', coalesce(summary, '')), 'B')
            || setweight(to_tsvector('english', coalesce(body, '')), 'C')
        ) STORED;
        CREATE INDEX contexts_tsv ON contexts USING gin (tsv);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX contexts_tsv;
        ALTER TABLE contexts DROP COLUMN tsv;
        ALTER TABLE contexts ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('english', coalesce(title, '')), 'A')
            || setweight(to_tsvector('english', coalesce(subject, '')), 'A')
            || setweight(to_tsvector('english', coalesce(summary, '')), 'B')
            || setweight(to_tsvector('english', coalesce(body, '')), 'C')
        ) STORED;
        CREATE INDEX contexts_tsv ON contexts USING gin (tsv);
        """
    )
