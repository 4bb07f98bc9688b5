"""state schema: the sync ledger

Revision ID: state_0002
Revises: state_0001
Create Date: 2026-12-01

One row per selective sync request and one per key outcome, written in the same
transaction as the key's rows (``selective_sync.ledger``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "state_0002"
down_revision = "state_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_request",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("run_name", sa.String(length=255), nullable=False),
        sa.Column("district_number", sa.Integer(), nullable=False),
        sa.Column("object", sa.String(length=40), nullable=False),
        sa.Column("requested_by", sa.String(length=120), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("check_dependencies", sa.Boolean(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("key_count", sa.Integer(), nullable=False),
        sa.Column(
            "ids",
            sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("succeeded", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_sync_request_district", "sync_request", ["district_number", "requested_at"])
    op.create_table(
        "sync_key_outcome",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("object", sa.String(length=40), nullable=False),
        sa.Column("record_key", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("parents_synced", sa.Text(), nullable=True),
        sa.Column("written_at", sa.DateTime(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "object", "record_key"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("sync_key_outcome")
    op.drop_index("ix_sync_request_district", table_name="sync_request")
    op.drop_table("sync_request")
