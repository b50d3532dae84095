"""Foundation: tenants, sources, API tokens, the events ledger and the contexts index.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenants (
            id          text PRIMARY KEY,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        INSERT INTO tenants (id) VALUES ('default');

        CREATE TABLE sources (
            name        text PRIMARY KEY,
            tenant      text NOT NULL REFERENCES tenants (id),
            provider    text NOT NULL,
            secrets     text[] NOT NULL,
            config      jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now(),
            CHECK (cardinality(secrets) > 0)
        );

        CREATE TABLE api_tokens (
            token_hash  bytea PRIMARY KEY,
            tenant      text NOT NULL REFERENCES tenants (id),
            name        text NOT NULL DEFAULT '',
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );

        CREATE TABLE events (
            tenant      text NOT NULL,
            id          text NOT NULL,
            context_id  text NOT NULL,
            source      text NOT NULL,
            event_type  text NOT NULL,
            text        text NOT NULL,
            received_at timestamptz NOT NULL,
            occurred_at timestamptz NOT NULL,
            stream_id   text NOT NULL DEFAULT '',
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX events_recent ON events (tenant, received_at DESC);
        CREATE INDEX events_context ON events (tenant, context_id, occurred_at);

        CREATE TABLE contexts (
            tenant      text NOT NULL,
            id          text NOT NULL,
            source      text NOT NULL,
            subject     text NOT NULL,
            kind        text NOT NULL,
            title       text NOT NULL,
            summary     text NOT NULL DEFAULT '',
            body        text NOT NULL DEFAULT '',
            state       text,
            url         text,
            tier        text NOT NULL DEFAULT 'hot',
            importance  real NOT NULL DEFAULT 0.5,
            event_count integer NOT NULL DEFAULT 0,
            labels      text[] NOT NULL DEFAULT '{}',
            head_key    text NOT NULL,
            created_at  timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector('english', coalesce(title, '')), 'A')
                || setweight(to_tsvector('english', coalesce(subject, '')), 'A')
                || setweight(to_tsvector('english', coalesce(summary, '')), 'B')
                || setweight(to_tsvector('english', coalesce(body, '')), 'C')
            ) STORED,
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX contexts_tsv ON contexts USING gin (tsv);
        CREATE INDEX contexts_updated ON contexts (tenant, updated_at DESC);
        CREATE INDEX contexts_subject ON contexts (tenant, subject);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE contexts, events, api_tokens, sources, tenants")
