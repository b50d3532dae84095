"""The audit ledger (one row per accepted event, written by group "audit") and the envelope
schema registry.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ledger (
            tenant          text NOT NULL,
            id              text NOT NULL,
            source          text NOT NULL,
            provider        text NOT NULL,
            event_type      text NOT NULL,
            delivery_id     text NOT NULL DEFAULT '',
            received_at     timestamptz NOT NULL,
            stream_id       text NOT NULL,
            schema_version  integer NOT NULL,
            recorded_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX ledger_source_time ON ledger (tenant, source, received_at);

        CREATE TABLE envelope_schemas (
            version        integer PRIMARY KEY,
            descriptor     bytea NOT NULL,
            registered_at  timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE envelope_schemas, ledger")
