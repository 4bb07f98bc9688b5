"""state schema: the stored Verification Summary, and where a ledger request came from

Revision ID: state_0003
Revises: state_0002
Create Date: 2026-12-08

Each verification's result per district and object, with its record issues, kept in the
state database (``selective_sync.verification.records``; before, only Prefect artifacts
held it), and ``sync_request.origin``: ``cli`` for a request the command line ran itself,
NULL for a run of the ``selective-sync`` flow (every request recorded before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "state_0003"
down_revision = "state_0002"
branch_labels = None
depends_on = None

MOMENT = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column("sync_request", sa.Column("origin", sa.String(length=8), nullable=True))
    op.create_table(
        "verification_result",
        sa.Column("district_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("object", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("verified_at", MOMENT, nullable=False),
        sa.Column("stored_at", MOMENT, nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("district_number", "object", "run_id"),
    )
    op.create_index(
        "ix_verification_result_object",
        "verification_result",
        ["district_number", "object", "verified_at"],
    )
    op.create_index(
        "ix_verification_result_run", "verification_result", ["district_number", "verified_at"]
    )
    op.create_table(
        "verification_issues",
        sa.Column("district_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("object", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rows", LONG_TEXT, nullable=False),
        sa.PrimaryKeyConstraint("district_number", "object", "run_id", "part"),
    )


def downgrade() -> None:
    op.drop_table("verification_issues")
    op.drop_index("ix_verification_result_run", table_name="verification_result")
    op.drop_index("ix_verification_result_object", table_name="verification_result")
    op.drop_table("verification_result")
    with op.batch_alter_table("sync_request") as batch:
        batch.drop_column("origin")
