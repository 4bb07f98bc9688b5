"""state schema: initial

Revision ID: state_0001
Revises:
Create Date: 2026-11-28

The code rows and the registered districts are data, not schema: ``initdb.seed_state``
adds whatever is missing after every upgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "state_0001"
down_revision = None
branch_labels = ("state",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_diploma_type",
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "code_end_status",
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "code_gender",
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "code_grade",
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "code_race_ethnicity",
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "code_service_type",
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "code_start_status",
        sa.Column("code", sa.String(length=4), nullable=False),
        sa.Column("description", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("code"),
    )
    op.create_table(
        "state_district",
        sa.Column("district_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("district_number"),
    )
    op.create_table(
        "state_person",
        sa.Column("district_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state_id", sa.String(length=12), nullable=True),
        sa.Column("current_identity_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["district_number"],
            ["state_district.district_number"],
        ),
        sa.PrimaryKeyConstraint("district_number", "person_id"),
    )
    op.create_table(
        "state_enrollment",
        sa.Column("district_number", sa.Integer(), autoincrement=False, nullable=False),
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
            ["district_number", "person_id"],
            ["state_person.district_number", "state_person.person_id"],
            name="fk_state_enrollment_person",
        ),
        sa.ForeignKeyConstraint(
            ["end_status"],
            ["code_end_status.code"],
        ),
        sa.ForeignKeyConstraint(
            ["grade"],
            ["code_grade.code"],
        ),
        sa.ForeignKeyConstraint(
            ["service_type"],
            ["code_service_type.code"],
        ),
        sa.ForeignKeyConstraint(
            ["start_status"],
            ["code_start_status.code"],
        ),
        sa.PrimaryKeyConstraint("district_number", "enrollment_id"),
    )
    op.create_index(
        "ix_state_enrollment_person",
        "state_enrollment",
        ["district_number", "person_id"],
        unique=False,
    )
    op.create_table(
        "state_graduation",
        sa.Column("district_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("graduation_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("diploma_type", sa.String(length=4), nullable=False),
        sa.Column("diploma_date", sa.Date(), nullable=True),
        sa.Column("cohort_end_year", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["diploma_type"],
            ["code_diploma_type.code"],
        ),
        sa.ForeignKeyConstraint(
            ["district_number", "person_id"],
            ["state_person.district_number", "state_person.person_id"],
            name="fk_state_graduation_person",
        ),
        sa.PrimaryKeyConstraint("district_number", "graduation_id"),
    )
    op.create_index(
        "ix_state_graduation_person",
        "state_graduation",
        ["district_number", "person_id"],
        unique=False,
    )
    op.create_table(
        "state_identity",
        sa.Column("district_number", sa.Integer(), autoincrement=False, nullable=False),
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
            ["district_number", "person_id"],
            ["state_person.district_number", "state_person.person_id"],
            name="fk_state_identity_person",
        ),
        sa.ForeignKeyConstraint(
            ["gender"],
            ["code_gender.code"],
        ),
        sa.ForeignKeyConstraint(
            ["race_ethnicity"],
            ["code_race_ethnicity.code"],
        ),
        sa.PrimaryKeyConstraint("district_number", "identity_id"),
    )
    op.create_index(
        "ix_state_identity_person", "state_identity", ["district_number", "person_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("state_identity")
    op.drop_table("state_graduation")
    op.drop_table("state_enrollment")
    op.drop_table("state_person")
    op.drop_table("state_district")
    op.drop_table("code_start_status")
    op.drop_table("code_service_type")
    op.drop_table("code_race_ethnicity")
    op.drop_table("code_grade")
    op.drop_table("code_gender")
    op.drop_table("code_end_status")
    op.drop_table("code_diploma_type")
