"""District and state database schemas.

The district database holds one district's records keyed by district IDs. The state
database holds every district's records keyed by (district number, district ID), with the
real constraints a state enforces: primary keys, foreign keys to the parent object, NOT NULL,
and code tables that district codes must map to.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

STATE_PREFIX = "state_"

district_metadata = MetaData()
state_metadata = MetaData()

# ---------------------------------------------------------------- district side

Table(
    "school",
    district_metadata,
    Column("school_id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(80), nullable=False),
)
Table(
    "person",
    district_metadata,
    Column("person_id", Integer, primary_key=True, autoincrement=False),
    Column("state_id", String(12)),
    # No FK to identity: person and identity point at each other.
    Column("current_identity_id", Integer),
)
Table(
    "identity",
    district_metadata,
    Column("identity_id", Integer, primary_key=True, autoincrement=False),
    Column("person_id", Integer, ForeignKey("person.person_id"), nullable=False, index=True),
    Column("last_name", String(60), nullable=False),
    Column("first_name", String(60), nullable=False),
    Column("middle_name", String(60)),
    Column("suffix", String(10)),
    Column("birth_date", Date),
    Column("gender", String(2)),
    Column("race_ethnicity", String(2)),
    Column("effective_date", Date),
)
Table(
    "enrollment",
    district_metadata,
    Column("enrollment_id", Integer, primary_key=True, autoincrement=False),
    Column("person_id", Integer, ForeignKey("person.person_id"), nullable=False, index=True),
    Column("school_id", Integer, nullable=False),
    Column("end_year", Integer, nullable=False),
    Column("grade", String(4), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("start_status", String(4)),
    Column("end_date", Date),
    Column("end_status", String(4)),
    Column("service_type", String(2), nullable=False),
)
Table(
    "graduation",
    district_metadata,
    Column("graduation_id", Integer, primary_key=True, autoincrement=False),
    Column("person_id", Integer, ForeignKey("person.person_id"), nullable=False, index=True),
    Column("diploma_type", String(4), nullable=False),
    Column("diploma_date", Date),
    Column("cohort_end_year", Integer),
)

# ---------------------------------------------------------------- state side

# State code tables: a district code must appear here or the state refuses the record.
CODE_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "code_grade": (
        ("PK", "Pre-kindergarten"),
        ("KG", "Kindergarten"),
        *((f"{g:02d}", f"Grade {g}") for g in range(1, 13)),
    ),
    "code_gender": (("M", "Male"), ("F", "Female"), ("N", "Non-binary")),
    "code_race_ethnicity": (
        ("1", "Hispanic/Latino"),
        ("2", "American Indian or Alaska Native"),
        ("3", "Asian"),
        ("4", "Black or African American"),
        ("5", "Native Hawaiian or Pacific Islander"),
        ("6", "White"),
        ("7", "Two or more races"),
    ),
    "code_start_status": (
        ("E1", "First entry in the state"),
        ("E2", "Transfer from in-state school"),
        ("R1", "Re-entry"),
    ),
    "code_end_status": (
        ("W1", "Transfer to in-state school"),
        ("W2", "Moved out of state"),
        ("G1", "Graduated"),
        ("P1", "Promoted, end of year"),
    ),
    "code_service_type": (("P", "Primary"), ("S", "Secondary"), ("N", "Special education only")),
    "code_diploma_type": (
        ("RG", "Regular diploma"),
        ("AD", "Advanced diploma"),
        ("CE", "Certificate of completion"),
        ("GE", "High school equivalency"),
    ),
}

for _code_table in CODE_TABLES:
    Table(
        _code_table,
        state_metadata,
        Column("code", String(4), primary_key=True),
        Column("description", String(80), nullable=False),
    )

Table(
    "state_district",
    state_metadata,
    Column("district_number", Integer, primary_key=True, autoincrement=False),
    Column("name", String(80), nullable=False),
)
Table(
    "state_person",
    state_metadata,
    Column(
        "district_number",
        Integer,
        ForeignKey("state_district.district_number"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("person_id", Integer, primary_key=True, autoincrement=False),
    Column("state_id", String(12)),
    Column("current_identity_id", Integer),
)
Table(
    "state_identity",
    state_metadata,
    Column("district_number", Integer, primary_key=True, autoincrement=False),
    Column("identity_id", Integer, primary_key=True, autoincrement=False),
    Column("person_id", Integer, nullable=False),
    Column("last_name", String(60), nullable=False),
    Column("first_name", String(60), nullable=False),
    Column("middle_name", String(60)),
    Column("suffix", String(10)),
    Column("birth_date", Date),
    Column("gender", String(2), ForeignKey("code_gender.code")),
    Column("race_ethnicity", String(2), ForeignKey("code_race_ethnicity.code")),
    Column("effective_date", Date),
    ForeignKeyConstraint(
        ["district_number", "person_id"],
        ["state_person.district_number", "state_person.person_id"],
        name="fk_state_identity_person",
    ),
    Index("ix_state_identity_person", "district_number", "person_id"),
)
Table(
    "state_enrollment",
    state_metadata,
    Column("district_number", Integer, primary_key=True, autoincrement=False),
    Column("enrollment_id", Integer, primary_key=True, autoincrement=False),
    Column("person_id", Integer, nullable=False),
    Column("school_id", Integer, nullable=False),
    Column("end_year", Integer, nullable=False),
    Column("grade", String(4), ForeignKey("code_grade.code"), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("start_status", String(4), ForeignKey("code_start_status.code")),
    Column("end_date", Date),
    Column("end_status", String(4), ForeignKey("code_end_status.code")),
    Column("service_type", String(2), ForeignKey("code_service_type.code"), nullable=False),
    ForeignKeyConstraint(
        ["district_number", "person_id"],
        ["state_person.district_number", "state_person.person_id"],
        name="fk_state_enrollment_person",
    ),
    Index("ix_state_enrollment_person", "district_number", "person_id"),
)
Table(
    "state_graduation",
    state_metadata,
    Column("district_number", Integer, primary_key=True, autoincrement=False),
    Column("graduation_id", Integer, primary_key=True, autoincrement=False),
    Column("person_id", Integer, nullable=False),
    Column("diploma_type", String(4), ForeignKey("code_diploma_type.code"), nullable=False),
    Column("diploma_date", Date),
    Column("cohort_end_year", Integer),
    ForeignKeyConstraint(
        ["district_number", "person_id"],
        ["state_person.district_number", "state_person.person_id"],
        name="fk_state_graduation_person",
    ),
    Index("ix_state_graduation_person", "district_number", "person_id"),
)


# ---------------------------------------------------------------- state side: the ledger
# What each selective sync did, written with the data (``selective_sync.ledger``).

LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

# A run id is a Prefect flow-run UUID (36 characters) or the CLI's own.
RUN_ID = 36

sync_request = Table(
    "sync_request",
    state_metadata,
    Column("run_id", String(RUN_ID), primary_key=True),
    Column("run_name", String(255), nullable=False),
    Column("district_number", Integer, nullable=False),
    Column("object", String(40), nullable=False),
    Column("requested_by", String(120), nullable=False),
    Column("requested_at", DateTime, nullable=False),
    Column("completed_at", DateTime),
    Column("status", String(20), nullable=False),
    Column("check_dependencies", Boolean, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("key_count", Integer, nullable=False),
    # The keys as asked, in order (a million IDs is ~8 MB: MariaDB's TEXT stops at 64 KB).
    Column("ids", LongText, nullable=False),
    Column("succeeded", Integer),
    Column("message", Text),
    # Liveness of the process running the request (host, pid, last sign of life).
    Column("host", String(255)),
    Column("pid", Integer),
    Column("heartbeat_at", DateTime),
    # Who ran it: NULL for a run of the ``selective-sync`` flow (a Prefect flow run with
    # that id), ``cli`` for the command line's own run (no Prefect run exists).
    Column("origin", String(8)),
    Index("ix_sync_request_district", "district_number", "requested_at"),
)

sync_key_outcome = Table(
    "sync_key_outcome",
    state_metadata,
    Column("run_id", String(RUN_ID), primary_key=True),
    # The request's object, or a parent object synced first for one of its keys.
    Column("object", String(40), primary_key=True),
    Column("record_key", BigInteger, primary_key=True, autoincrement=False),
    Column("outcome", String(12), nullable=False),
    Column("reason", Text),
    Column("attempts", Integer, nullable=False),
    Column("parents_synced", Text),
    # Set only when this row was written in the same transaction as the key's rows.
    Column("written_at", DateTime),
    Column("recorded_at", DateTime, nullable=False),
    # One B-tree, not a rowid table plus its primary-key index: written once per key.
    sqlite_with_rowid=False,
)

LEDGER_TABLES = frozenset({"sync_request", "sync_key_outcome"})


# ---------------------------------------------------------------- state side: the summary
# The stored Verification Summary (``selective_sync.verification.records``): each run's
# result per district and object, and the record issues of each result, as the codec
# (``selective_sync.verification.codec``) encodes them.

# Microseconds on MariaDB too: the newest result of an object is the one read back.
Moment = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

verification_result = Table(
    "verification_result",
    state_metadata,
    Column("district_number", Integer, primary_key=True, autoincrement=False),
    Column("object", String(40), primary_key=True),
    Column("run_id", String(RUN_ID), primary_key=True),
    Column("verified_at", Moment, nullable=False),
    Column("stored_at", Moment, nullable=False),
    # The codec's summary row (figures, timestamps, issue count) as JSON.
    Column("summary", Text, nullable=False),
    Index("ix_verification_result_object", "district_number", "object", "verified_at"),
    Index("ix_verification_result_run", "district_number", "verified_at"),
)

verification_issues = Table(
    "verification_issues",
    state_metadata,
    Column("district_number", Integer, primary_key=True, autoincrement=False),
    Column("object", String(40), primary_key=True),
    Column("run_id", String(RUN_ID), primary_key=True),
    Column("part", Integer, primary_key=True, autoincrement=False),
    # One chunk of the result's record issues: the codec's rows as a JSON list.
    Column("rows", LongText, nullable=False),
)

SUMMARY_TABLES = frozenset({"verification_result", "verification_issues"})


def district_table(name: str) -> Table:
    return district_metadata.tables[name]


def state_table(name: str) -> Table:
    """The state table that mirrors district table ``name``."""
    return state_metadata.tables[STATE_PREFIX + name]
