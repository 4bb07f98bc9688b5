"""district schema: initial

Revision ID: district_0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "district_0001"
down_revision = None
branch_labels = ("district",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("person_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state_id", sa.String(length=12), nullable=True),
        sa.Column("current_identity_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("person_id"),
    )
    op.create_table(
        "school",
        sa.Column("school_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("school_id"),
    )
    op.create_table(
        "enrollment",
        sa.Column("enrollment_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("end_year", sa.Integer(), nullable=False),
        sa.Column("grade", sa.String(length=4), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("start_status", sa.String(length=4), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("end_status", sa.String(length=4), nullable=True),
        sa.Column("service_type", sa.String(length=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.person_id"],
        ),
        sa.PrimaryKeyConstraint("enrollment_id"),
    )
    op.create_index(op.f("ix_enrollment_person_id"), "enrollment", ["person_id"], unique=False)
    op.create_table(
        "graduation",
        sa.Column("graduation_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("diploma_type", sa.String(length=4), nullable=False),
        sa.Column("diploma_date", sa.Date(), nullable=True),
        sa.Column("cohort_end_year", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.person_id"],
        ),
        sa.PrimaryKeyConstraint("graduation_id"),
    )
    op.create_index(op.f("ix_graduation_person_id"), "graduation", ["person_id"], unique=False)
    op.create_table(
        "identity",
        sa.Column("identity_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("last_name", sa.String(length=60), nullable=False),
        sa.Column("first_name", sa.String(length=60), nullable=False),
        sa.Column("middle_name", sa.String(length=60), nullable=True),
        sa.Column("suffix", sa.String(length=10), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("gender", sa.String(length=2), nullable=True),
        sa.Column("race_ethnicity", sa.String(length=2), nullable=True),
        sa.Column("effective_date", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.person_id"],
        ),
        sa.PrimaryKeyConstraint("identity_id"),
    )
    op.create_index(op.f("ix_identity_person_id"), "identity", ["person_id"], unique=False)


def downgrade() -> None:
    op.drop_table("identity")
    op.drop_table("graduation")
    op.drop_table("enrollment")
    op.drop_table("school")
    op.drop_table("person")
