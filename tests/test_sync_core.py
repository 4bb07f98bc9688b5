"""The plain-Python sync core on real databases (SQLite files; PostgreSQL/MariaDB if up)."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
import sqlite3
import threading
import time

import pytest
from dbservers import server_database
from sqlalchemy import delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from selective_sync.db import make_engine
from selective_sync.errors import BatchAborted, SelectiveSyncError, TransientFault
from selective_sync.initdb import create_district_schema, create_state_schema
from selective_sync.models import Outcome
from selective_sync.registry import get_object
from selective_sync.schema import district_table, state_metadata, state_table
from selective_sync.settings import sqlite_url
from selective_sync.sync import (
    RetryPolicy,
    is_transient,
    sync_key,
    sync_keys,
    sync_with_dependencies,
)
from selective_sync.sync.copy import sync_key_with_retries
from selective_sync.sync.diagnose import diagnose_failure, find_problems
from selective_sync.verification.engine import verify_object

D = 275  # the district being synced
OTHER = 312  # another district at the state, with overlapping IDs
PERSON = get_object("PersonIdentity")
ENROLLMENT = get_object("Enrollment")
GRADUATION = get_object("Graduation")
DAY = dt.date(2010, 5, 1)


# ------------------------------------------------------------------ fixture data


def person(pid, state_id, current):
    return {"person_id": pid, "state_id": state_id, "current_identity_id": current}


def identity(iid, pid, last, gender="F", first="Ann", effective=DAY):
    return {
        "identity_id": iid,
        "person_id": pid,
        "last_name": last,
        "first_name": first,
        "middle_name": None,
        "suffix": None,
        "birth_date": dt.date(2008, 3, 4),
        "gender": gender,
        "race_ethnicity": "6",
        "effective_date": effective,
    }


def enrollment(eid, pid, grade="05", end_status=None):
    return {
        "enrollment_id": eid,
        "person_id": pid,
        "school_id": 7,
        "end_year": 2025,
        "grade": grade,
        "start_date": dt.date(2024, 8, 20),
        "start_status": "E1",
        "end_date": None,
        "end_status": end_status,
        "service_type": "P",
    }


DISTRICT_ROWS = {
    "person": [
        person(1, "S1", 11),  # identical at the state
        person(2, "S2-NEW", 21),  # state_id differs; identity 22 removed at the district
        person(3, "S3", 30),  # not at the state
        person(4, "S4-NEW", 40),  # its identity has a gender the state does not map
        person(6, "S6", 60),  # not at the state; its identity is fine
    ],
    "identity": [
        identity(10, 1, "Alpha", effective=dt.date(2009, 1, 1)),
        identity(11, 1, "Alpha-Beta"),
        identity(20, 2, "Bravo", effective=dt.date(2009, 1, 1)),
        identity(21, 2, "Bravo"),
        identity(30, 3, "Charlie"),
        identity(40, 4, "Delta", gender="X"),
        identity(60, 6, "Foxtrot"),
    ],
    "enrollment": [
        enrollment(100, 1),  # identical at the state
        enrollment(101, 3),  # its person is not at the state
        enrollment(102, 1, grade="X9"),  # grade without a state mapping
        enrollment(103, 1, grade="06"),  # grade differs at the state
        enrollment(104, 4),  # its person cannot be synced (gender X)
        enrollment(105, 6),  # its person is not at the state, and can be synced
    ],
    "graduation": [],
}

STATE_ROWS_D = {
    "person": [person(1, "S1", 11), person(2, "S2-OLD", 21), person(4, "S4-OLD", 40)],
    "identity": [
        identity(10, 1, "Alpha", effective=dt.date(2009, 1, 1)),
        identity(11, 1, "Alpha-Beta"),
        identity(20, 2, "Bravo", effective=dt.date(2009, 1, 1)),
        identity(21, 2, "Bravo"),
        identity(22, 2, "Bravo-Old"),
        identity(40, 4, "Delta-Old"),
    ],
    "enrollment": [enrollment(100, 1), enrollment(103, 1, grade="05")],
}

# The other district reuses the same IDs with other values: it must never be touched.
STATE_ROWS_OTHER = {
    "person": [person(p, f"O{p}", p * 10) for p in (1, 2, 3, 4, 6)],
    "identity": [
        identity(i, i // 10, f"Other{i}", gender="M") for i in (10, 11, 20, 21, 22, 30, 40, 60)
    ],
    "enrollment": [enrollment(e, 1, grade="KG") for e in range(100, 106)],
}


def fill_district(engine):
    create_district_schema(engine)
    with engine.begin() as conn:
        for table, rows in DISTRICT_ROWS.items():
            if rows:
                conn.execute(insert(district_table(table)), rows)


def fill_state(engine):
    create_state_schema(engine, {D: "MAPLE VALLEY", OTHER: "OAK RIDGE"})
    with engine.begin() as conn:
        for number, data in ((D, STATE_ROWS_D), (OTHER, STATE_ROWS_OTHER)):
            for table, rows in data.items():
                conn.execute(
                    insert(state_table(table)), [{**r, "district_number": number} for r in rows]
                )


@pytest.fixture
def dbs(tmp_path):
    district_path, state_path = tmp_path / "district.db", tmp_path / "state.db"
    district = make_engine(sqlite_url(district_path), must_exist=False)
    state = make_engine(sqlite_url(state_path), must_exist=False)
    fill_district(district)
    fill_state(state)
    yield district, state, state_path
    district.dispose()
    state.dispose()


def state_checksum(state_path, district_number=None) -> str:
    """A hash of the raw stored bytes of the state's object tables (one district or all)."""
    digest = hashlib.sha256()
    with sqlite3.connect(state_path) as conn:
        for name in ("state_person", "state_identity", "state_enrollment", "state_graduation"):
            where = "" if district_number is None else f" WHERE district_number = {district_number}"
            for row in conn.execute(f"SELECT * FROM {name}{where} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def state_rows(engine, table, district_number, link, key):
    tab = state_table(table)
    with engine.connect() as conn:
        rows = conn.execute(
            select(*(tab.c[c.name] for c in district_table(table).columns))
            .where(tab.c.district_number == district_number, tab.c[link] == key)
            .order_by(tab.c[district_table(table).primary_key.columns.keys()[0]])
        )
        return [dict(r._mapping) for r in rows]


def district_rows(engine, table, link, key):
    tab = district_table(table)
    with engine.connect() as conn:
        rows = conn.execute(
            select(tab).where(tab.c[link] == key).order_by(*tab.primary_key.columns)
        )
        return [dict(r._mapping) for r in rows]


def assert_key_equal(district, state, spec, key, number=D):
    for part in spec.parts:
        assert state_rows(state, part.table, number, part.link, key) == district_rows(
            district, part.table, part.link, key
        ), part.table


# ------------------------------------------------------------------ outcomes


def test_unchanged_key_writes_nothing(dbs):
    district, state, path = dbs
    before = state_checksum(path)
    out = sync_key(district, state, PERSON, D, 1)
    assert out.outcome is Outcome.UNCHANGED
    assert out.reason == "already identical at the state"
    assert out.changes == [] and out.attempts == 1
    assert state_checksum(path) == before


def test_synced_updates_and_removes_history_for_that_key_only(dbs):
    district, state, path = dbs
    other_before = state_checksum(path, OTHER)
    out = sync_key(district, state, PERSON, D, 2)
    assert out.outcome is Outcome.SYNCED
    assert out.reason == "changed 2 rows (1 update, 1 delete)"
    by_action = {(c.table, c.row_id, c.action): c for c in out.changes}
    assert set(by_action) == {("person", 2, "update"), ("identity", 22, "delete")}
    diff = by_action[("person", 2, "update")].columns
    assert [(d.column, d.state, d.district) for d in diff] == [("state_id", "S2-OLD", "S2-NEW")]
    assert_key_equal(district, state, PERSON, 2)
    # Identity 22 of district 312 is still there.
    assert [r["identity_id"] for r in state_rows(state, "identity", OTHER, "person_id", 2)] == [
        20,
        21,
        22,
    ]
    assert state_checksum(path, OTHER) == other_before

    after_first = state_checksum(path)
    again = sync_key(district, state, PERSON, D, 2)
    assert again.outcome is Outcome.UNCHANGED and again.changes == []
    assert state_checksum(path) == after_first


def test_synced_inserts_a_missing_object(dbs):
    district, state, _ = dbs
    out = sync_key(district, state, PERSON, D, 3)
    assert out.outcome is Outcome.SYNCED
    assert sorted((c.table, c.row_id, c.action) for c in out.changes) == [
        ("identity", 30, "insert"),
        ("person", 3, "insert"),
    ]
    inserted = next(c for c in out.changes if c.table == "person")
    assert {d.column: (d.state, d.district) for d in inserted.columns} == {
        "state_id": (None, "S3"),
        "current_identity_id": (None, 30),
    }
    assert_key_equal(district, state, PERSON, 3)


def test_not_found_changes_nothing(dbs):
    district, state, path = dbs
    before = state_checksum(path)
    out = sync_key(district, state, PERSON, D, 999)
    assert out.outcome is Outcome.NOT_FOUND
    assert out.reason == "personID 999 not found at the district"
    assert state_checksum(path) == before


def test_failed_parent_missing(dbs):
    district, state, path = dbs
    before = state_checksum(path)
    out = sync_key(district, state, ENROLLMENT, D, 101)
    assert out.outcome is Outcome.FAILED
    assert out.reason == "parent PersonIdentity 3 is not at the state"
    assert out.changes == []
    assert state_checksum(path) == before


def test_failed_unmapped_code(dbs):
    district, state, path = dbs
    before = state_checksum(path)
    out = sync_key(district, state, ENROLLMENT, D, 102)
    assert out.outcome is Outcome.FAILED
    assert out.reason == "grade code 'X9' has no state mapping"
    assert state_checksum(path) == before


def test_failure_inside_the_transaction_leaves_the_key_untouched(dbs):
    # Person 4's root row is upserted first; its identity then violates the gender code FK.
    district, state, path = dbs
    before = state_checksum(path)
    person_before = state_rows(state, "person", D, "person_id", 4)
    out = sync_key(district, state, PERSON, D, 4)
    assert out.outcome is Outcome.FAILED
    assert out.reason == "gender code 'X' has no state mapping"
    assert state_rows(state, "person", D, "person_id", 4) == person_before
    assert person_before[0]["state_id"] == "S4-OLD"
    assert state_checksum(path) == before


def test_synced_enrollment_update(dbs):
    district, state, _ = dbs
    out = sync_key(district, state, ENROLLMENT, D, 103)
    assert out.outcome is Outcome.SYNCED
    (change,) = out.changes
    assert (change.table, change.row_id, change.action) == ("enrollment", 103, "update")
    assert [(d.column, d.state, d.district) for d in change.columns] == [("grade", "05", "06")]
    assert_key_equal(district, state, ENROLLMENT, 103)


def test_every_sync_leaves_the_other_district_byte_identical(dbs):
    district, state, path = dbs
    before = state_checksum(path, OTHER)
    for key in (1, 2, 3, 4, 6, 999):
        sync_with_dependencies(district, state, PERSON, D, key)
    for key in range(100, 107):
        sync_with_dependencies(district, state, ENROLLMENT, D, key)
    assert state_checksum(path, OTHER) == before


def test_accepts_object_name(dbs):
    district, state, _ = dbs
    assert sync_key(district, state, "personidentity", D, 1).outcome is Outcome.UNCHANGED


NOISE = (
    "UPDATE state_identity SET last_name = 'Alpha-Beta  ',"
    " birth_date = '2008-03-04 00:00:00.000000' WHERE district_number = 275"
    " AND identity_id = 11"
)
NOISE_REASON = "1 row (1 update): white space and date/time form only"


def stored_identity_11(path) -> tuple:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT last_name, CAST(birth_date AS BLOB) FROM state_identity"
            " WHERE district_number = 275 AND identity_id = 11"
        ).fetchone()


def test_noise_verification_ignores_is_still_written(dbs):
    """Trailing spaces in a trimmed column and a date stored with a time are not drift to
    verification, but a sync of the key writes the district's exact values and says what
    kind of difference they were; a second sync finds the key identical."""
    district, state, path = dbs
    with sqlite3.connect(path) as conn:
        conn.execute(NOISE)
    assert verify_object(district, state, PERSON, D, [1]).issues == []
    before = state_checksum(path)
    planned = sync_key(district, state, PERSON, D, 1, dry_run=True)
    assert planned.outcome is Outcome.SYNCED
    assert planned.reason == f"dry run: would change {NOISE_REASON}; nothing written"
    assert state_checksum(path) == before

    out = sync_key(district, state, PERSON, D, 1)
    assert out.outcome is Outcome.SYNCED and out.reason == f"changed {NOISE_REASON}"
    assert out.changes == planned.changes
    assert [(d.column, d.state, d.district) for c in out.changes for d in c.columns] == [
        ("last_name", "Alpha-Beta  ", "Alpha-Beta"),
        ("birth_date", "2008-03-04 00:00:00.000000", dt.date(2008, 3, 4)),
    ]
    assert stored_identity_11(path) == ("Alpha-Beta", b"2008-03-04")
    again = sync_key(district, state, PERSON, D, 1)
    assert again.outcome is Outcome.UNCHANGED and again.reason == "already identical at the state"


def test_a_batch_writes_noise_with_its_checked_update(dbs):
    """The batch path plans from its snapshot and writes with the checked update, whose
    "as planned on" values bind the text date as it was read (not through the Date type,
    which refuses text): no fallback to re-reading and upserting."""
    district, state, path = dbs
    with sqlite3.connect(path) as conn:
        conn.execute(NOISE)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement.lstrip().split(None, 3)[:3])

    event.listen(state, "before_cursor_execute", seen)
    try:
        (out,) = sync_keys(district, state, PERSON, D, [1])
    finally:
        event.remove(state, "before_cursor_execute", seen)
    assert out.outcome is Outcome.SYNCED and out.reason == f"changed {NOISE_REASON}"
    assert ["UPDATE", "state_identity", "SET"] in statements
    assert not any(s[:2] == ["INSERT", "INTO"] for s in statements), statements
    assert stored_identity_11(path) == ("Alpha-Beta", b"2008-03-04")
    (again,) = sync_keys(district, state, PERSON, D, [1])
    assert again.outcome is Outcome.UNCHANGED


def test_null_against_empty_text_is_drift_to_both_rules(dbs):
    """An empty string where the district has NULL: verification reports it, and the sync's
    reason does not call it noise."""
    district, state, path = dbs
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE state_identity SET middle_name = '' WHERE district_number = 275"
            " AND identity_id = 11"
        )
    (issue,) = verify_object(district, state, PERSON, D, [1]).issues
    assert issue.issue == "mismatched"
    out = sync_key(district, state, PERSON, D, 1)
    assert out.outcome is Outcome.SYNCED and out.reason == "changed 1 row (1 update)"
    assert [(d.column, d.state, d.district) for c in out.changes for d in c.columns] == [
        ("middle_name", "", None)
    ]
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute(
            "SELECT middle_name FROM state_identity WHERE district_number = 275"
            " AND identity_id = 11"
        ).fetchone()
    assert stored is None
    assert sync_key(district, state, PERSON, D, 1).outcome is Outcome.UNCHANGED


def test_noise_next_to_drift_is_not_called_noise(dbs):
    """A key with white space noise in one row and a real difference in another: synced,
    and the reason does not say "only"."""
    district, state, path = dbs
    with sqlite3.connect(path) as conn:
        conn.execute(NOISE)
        conn.execute(
            "UPDATE state_person SET state_id = 'S1-OLD' WHERE district_number = 275"
            " AND person_id = 1"
        )
    out = sync_key(district, state, PERSON, D, 1)
    assert out.reason == "changed 2 rows (2 update)"
    assert stored_identity_11(path) == ("Alpha-Beta", b"2008-03-04")


def test_identity_moved_between_people(dbs):
    # At the district identity 21 now belongs to person 1; the state still has it under 2.
    district, state, _ = dbs
    with district.begin() as conn:
        conn.execute(
            update(district_table("identity"))
            .where(district_table("identity").c.identity_id == 21)
            .values(person_id=1)
        )
    out = sync_key(district, state, PERSON, D, 1)
    assert out.outcome is Outcome.SYNCED
    (change,) = out.changes
    assert (change.table, change.row_id, change.action) == ("identity", 21, "update")
    assert [(d.column, d.state, d.district) for d in change.columns] == [("person_id", 2, 1)]
    assert_key_equal(district, state, PERSON, 1)
    # Person 2 still has its other rows; syncing it now only removes the stale 22.
    out2 = sync_key(district, state, PERSON, D, 2)
    assert {(c.row_id, c.action) for c in out2.changes} == {(2, "update"), (22, "delete")}
    assert_key_equal(district, state, PERSON, 2)


def test_graduation_object_works_from_the_registry(dbs):
    district, state, _ = dbs
    with district.begin() as conn:
        conn.execute(
            insert(district_table("graduation")),
            [
                {
                    "graduation_id": 500,
                    "person_id": 1,
                    "diploma_type": "RG",
                    "diploma_date": DAY,
                    "cohort_end_year": 2010,
                }
            ],
        )
    out = sync_key(district, state, GRADUATION, D, 500)
    assert out.outcome is Outcome.SYNCED
    assert_key_equal(district, state, GRADUATION, 500)
    assert sync_key(district, state, GRADUATION, D, 500).outcome is Outcome.UNCHANGED


# ------------------------------------------------------------------ dry run


def test_dry_run_plans_the_same_changes_and_writes_nothing(dbs):
    district, state, path = dbs
    before = state_checksum(path)
    planned = {k: sync_key(district, state, PERSON, D, k, dry_run=True) for k in (1, 2, 3, 4)}
    assert state_checksum(path) == before
    assert planned[1].outcome is Outcome.UNCHANGED
    assert planned[1].reason == "dry run: already identical at the state; nothing written"
    assert planned[2].outcome is Outcome.SYNCED
    assert planned[2].reason == "dry run: would change 2 rows (1 update, 1 delete); nothing written"
    assert planned[4].outcome is Outcome.FAILED
    assert planned[4].reason == "dry run: would fail: gender code 'X' has no state mapping"
    for key in (2, 3):
        real = sync_key(district, state, PERSON, D, key)
        assert real.changes == planned[key].changes


def test_dry_run_with_dependencies_assumes_the_parent_would_be_synced(dbs):
    district, state, path = dbs
    before = state_checksum(path)
    alone = sync_key(district, state, ENROLLMENT, D, 101, dry_run=True)
    assert alone.reason == "dry run: would fail: parent PersonIdentity 3 is not at the state"
    out = sync_with_dependencies(district, state, ENROLLMENT, D, 101, dry_run=True)
    assert out.outcome is Outcome.SYNCED
    assert out.parents_synced == ["PersonIdentity 3"]
    assert out.reason.startswith("dry run: would change 1 row (1 insert)")
    assert state_checksum(path) == before


# ------------------------------------------------------------------ check dependencies


def test_check_dependencies_syncs_the_missing_parent_first(dbs):
    district, state, _ = dbs
    out = sync_with_dependencies(district, state, ENROLLMENT, D, 101)
    assert out.outcome is Outcome.SYNCED
    assert out.parents_synced == ["PersonIdentity 3"]
    assert out.reason == "changed 1 row (1 insert); synced first: PersonIdentity 3"
    assert_key_equal(district, state, PERSON, 3)
    assert_key_equal(district, state, ENROLLMENT, 101)
    # The parent is now in place: a second run is unchanged and syncs no parent.
    again = sync_with_dependencies(district, state, ENROLLMENT, D, 101)
    assert again.outcome is Outcome.UNCHANGED and again.parents_synced == []


def test_check_dependencies_reports_a_parent_that_cannot_be_synced(dbs):
    district, state, path = dbs
    before = state_checksum(path)
    out = sync_with_dependencies(district, state, ENROLLMENT, D, 104)
    assert out.outcome is Outcome.FAILED
    assert out.reason == (
        "parent PersonIdentity 4 could not be synced: gender code 'X' has no state mapping"
    )
    assert out.attempts == 0  # the key itself was not tried
    assert not out.transient
    assert state_checksum(path) == before


def test_check_dependencies_on_an_object_without_parent(dbs):
    district, state, _ = dbs
    out = sync_with_dependencies(district, state, PERSON, D, 3)
    assert out.outcome is Outcome.SYNCED and out.parents_synced == []


# ------------------------------------------------------------------ batches


def test_sync_keys_gives_every_outcome_in_order(dbs):
    district, state, path = dbs
    other_before = state_checksum(path, OTHER)
    seen = []
    outs = sync_keys(
        district, state, ENROLLMENT, D, [100, 101, 102, 103, 104, 105, 999], on_outcome=seen.append
    )
    assert seen == outs
    assert [(o.key, o.outcome) for o in outs] == [
        (100, Outcome.UNCHANGED),
        (101, Outcome.FAILED),
        (102, Outcome.FAILED),
        (103, Outcome.SYNCED),
        (104, Outcome.SYNCED),  # person 4 is at the state (outdated, but there)
        (105, Outcome.FAILED),
        (999, Outcome.NOT_FOUND),
    ]
    assert outs[1].reason == "parent PersonIdentity 3 is not at the state"
    assert outs[5].reason == "parent PersonIdentity 6 is not at the state"
    with_deps = sync_keys(
        district, state, ENROLLMENT, D, [100, 101, 102, 103, 104, 105, 999], check_dependencies=True
    )
    assert [(o.key, o.outcome, o.parents_synced) for o in with_deps] == [
        (100, Outcome.UNCHANGED, []),
        (101, Outcome.SYNCED, ["PersonIdentity 3"]),
        (102, Outcome.FAILED, []),
        (103, Outcome.UNCHANGED, []),
        (104, Outcome.FAILED, []),
        (105, Outcome.SYNCED, ["PersonIdentity 6"]),
        (999, Outcome.NOT_FOUND, []),
    ]
    assert state_checksum(path, OTHER) == other_before
    third = sync_keys(district, state, ENROLLMENT, D, [100, 101, 103, 105])
    assert {o.outcome for o in third} == {Outcome.UNCHANGED}


def test_sync_keys_shares_a_parent_between_keys(dbs):
    district, state, _ = dbs
    with district.begin() as conn:
        conn.execute(insert(district_table("enrollment")), [enrollment(106, 3, grade="06")])
    outs = sync_keys(district, state, ENROLLMENT, D, [101, 106], check_dependencies=True)
    assert [o.outcome for o in outs] == [Outcome.SYNCED, Outcome.SYNCED]
    assert [o.parents_synced for o in outs] == [["PersonIdentity 3"], ["PersonIdentity 3"]]


def test_sync_keys_with_moved_rows_and_repeated_keys(dbs):
    # The batch's up-front snapshot of the state must not hide what earlier keys wrote.
    district, state, _ = dbs
    with district.begin() as conn:
        conn.execute(
            update(district_table("identity"))
            .where(district_table("identity").c.identity_id == 21)
            .values(person_id=1)
        )
    outs = sync_keys(district, state, PERSON, D, [1, 2, 1, 2])
    assert [o.outcome for o in outs] == [
        Outcome.SYNCED,
        Outcome.SYNCED,
        Outcome.UNCHANGED,
        Outcome.UNCHANGED,
    ]
    assert {(c.row_id, c.action) for c in outs[1].changes} == {(2, "update"), (22, "delete")}
    for key in (1, 2):
        assert_key_equal(district, state, PERSON, key)


def _stale_snapshot_batch(district, state):
    """A batch whose up-front snapshot of the state goes stale under it.

    After the batch's first key another writer (another sync run, say) changes rows that
    later keys planned from the snapshot are about to write: each such key must notice,
    re-read, and report only what it really changed.
    """
    with district.begin() as conn:
        conn.execute(
            update(district_table("identity"))
            .where(district_table("identity").c.person_id == 1)
            .values(first_name="Anna")
        )
    sp, si = state_table("person"), state_table("identity")

    def meddle(outcome):
        if outcome.key != 3:
            return
        with state.begin() as conn:
            # Key 1 planned to update identities 10 and 11; 11 is gone now.
            conn.execute(delete(si).where(si.c.district_number == D, si.c.identity_id == 11))
            # Key 2 planned to update person 2; it already holds the district's value.
            conn.execute(
                update(sp)
                .where(sp.c.district_number == D, sp.c.person_id == 2)
                .values(state_id="S2-NEW")
            )
            # Key 6 planned to insert person 6 and identity 60; both are there now.
            conn.execute(insert(sp), [{**person(6, "S6", 60), "district_number": D}])
            conn.execute(insert(si), [{**identity(60, 6, "Foxtrot"), "district_number": D}])

    outs = sync_keys(district, state, PERSON, D, [3, 1, 2, 6], on_outcome=meddle)
    assert [o.outcome for o in outs] == [Outcome.SYNCED] * 3 + [Outcome.UNCHANGED]
    changes = [{(c.table, c.row_id, c.action) for c in o.changes} for o in outs]
    assert changes == [
        {("person", 3, "insert"), ("identity", 30, "insert")},
        {("identity", 10, "update"), ("identity", 11, "insert")},
        {("identity", 22, "delete")},
        set(),
    ]
    assert outs[1].reason == "changed 2 rows (1 insert, 1 update)"
    for key in (1, 2, 3, 6):
        assert_key_equal(district, state, PERSON, key)
    return outs


def test_sync_keys_notices_a_stale_snapshot(dbs):
    district, state, path = dbs
    other_before = state_checksum(path, OTHER)
    _stale_snapshot_batch(district, state)
    assert state_checksum(path, OTHER) == other_before
    again = sync_keys(district, state, PERSON, D, [1, 2, 3, 6])
    assert {o.outcome for o in again} == {Outcome.UNCHANGED}


def test_sync_keys_reports_the_same_changes_as_single_keys(dbs, tmp_path):
    # Planned from the snapshot or read in the transaction: same outcomes, same bytes.
    district, state, path = dbs
    keys = [1, 2, 3, 4, 6, 999, 2]
    batch = sync_keys(district, state, PERSON, D, keys)
    after_batch = state_checksum(path)
    other = make_engine(sqlite_url(tmp_path / "state2.db"), must_exist=False)
    fill_state(other)
    singles = [sync_key(district, other, PERSON, D, k) for k in keys]
    other.dispose()
    assert batch == singles
    assert state_checksum(tmp_path / "state2.db") == after_batch


def test_a_batch_holds_one_state_connection(dbs):
    district, state, _ = dbs
    checkouts = []
    event.listen(state, "checkout", lambda *args: checkouts.append(1))
    outs = sync_keys(district, state, PERSON, D, [1, 2, 3, 6, 2, 999])
    assert [o.outcome for o in outs] == [
        Outcome.UNCHANGED,
        Outcome.SYNCED,
        Outcome.SYNCED,
        Outcome.SYNCED,
        Outcome.UNCHANGED,
        Outcome.NOT_FOUND,
    ]
    assert len(checkouts) == 1
    for key in (1, 2, 3, 6):
        assert_key_equal(district, state, PERSON, key)


def test_concurrent_keys_in_threads(dbs):
    # The flow runs per-key tasks in a thread pool against the same state database.
    from concurrent.futures import ThreadPoolExecutor

    district, state, path = dbs
    other_before = state_checksum(path, OTHER)
    jobs = [(PERSON, k) for k in (1, 2, 3, 4, 6)] + [(ENROLLMENT, k) for k in range(100, 106)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outs = list(
            pool.map(
                lambda job: sync_with_dependencies(
                    district, state, job[0], D, job[1], retry=RetryPolicy(attempts=6)
                ),
                jobs,
            )
        )
    by_key = {(spec.name, o.key): o for (spec, _), o in zip(jobs, outs, strict=True)}
    assert by_key[("Enrollment", 104)].outcome is Outcome.FAILED
    assert by_key[("Enrollment", 102)].outcome is Outcome.FAILED
    assert by_key[("PersonIdentity", 4)].outcome is Outcome.FAILED
    ok = [
        o
        for k, o in by_key.items()
        if k not in {("Enrollment", 104), ("Enrollment", 102), ("PersonIdentity", 4)}
    ]
    assert all(o.outcome.succeeded for o in ok)
    for key in (1, 2, 3, 6):
        assert_key_equal(district, state, PERSON, key)
    for key in (100, 101, 103, 105):
        assert_key_equal(district, state, ENROLLMENT, key)
    assert state_checksum(path, OTHER) == other_before


def test_sync_keys_matches_sync_key(dbs):
    district, state, _ = dbs
    keys = [1, 2, 3, 4, 6, 999, 2]
    outs = sync_keys(district, state, PERSON, D, keys, dry_run=True)
    singles = [sync_key(district, state, PERSON, D, k, dry_run=True) for k in keys]
    assert outs == singles


# ------------------------------------------------------------------ transient faults


def short_busy_timeout(engine, ms=100):
    """Make SQLite give up waiting for a lock quickly (the default waits 5 s)."""

    @event.listens_for(engine, "connect")
    def _busy(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA busy_timeout = {ms}")

    engine.dispose()
    return engine


def hold_write_lock(path, seconds):
    """Another connection holds the SQLite write lock for ``seconds``; returns when it holds."""
    locked = threading.Event()

    def run():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert locked.wait(5)
    return thread


def test_sync_key_raises_transient_fault_on_a_locked_database(dbs):
    district, state, path = dbs
    short_busy_timeout(state)
    thread = hold_write_lock(path, 1.0)
    with pytest.raises(TransientFault) as info:
        sync_key(district, state, PERSON, D, 2)
    thread.join()
    assert isinstance(info.value, SelectiveSyncError)
    assert str(info.value) == "transient fault syncing PersonIdentity 2: database is locked"
    assert isinstance(info.value.cause, OperationalError)
    assert is_transient(info.value)
    assert is_transient(pickle.loads(pickle.dumps(info.value)))
    # Nothing of the key changed; once the lock is gone it syncs.
    assert sync_key(district, state, PERSON, D, 2).outcome is Outcome.SYNCED


def test_retries_ride_out_a_held_lock(dbs):
    district, state, path = dbs
    short_busy_timeout(state, ms=200)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        time.sleep(seconds)

    thread = hold_write_lock(path, 2.0)
    out = sync_key_with_retries(
        district, state, PERSON, D, 2, attempts=8, backoff_s=0.3, jitter=0.3, sleep=sleep
    )
    thread.join()
    assert out.outcome is Outcome.SYNCED
    assert out.attempts > 1
    assert len(sleeps) == out.attempts - 1
    assert all(b > a for a, b in zip(sleeps, sleeps[1:], strict=False))  # exponential
    assert_key_equal(district, state, PERSON, 2)


def test_retries_exhausted_give_a_failed_outcome(dbs):
    district, state, path = dbs
    short_busy_timeout(state, ms=50)
    sleeps = []
    thread = hold_write_lock(path, 1.5)
    out = sync_key_with_retries(district, state, PERSON, D, 2, attempts=3, sleep=sleeps.append)
    thread.join()
    assert out.outcome is Outcome.FAILED
    assert out.attempts == 3
    assert out.reason == "transient fault after 3 attempts: database is locked"
    assert out.transient
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 0.65 and 1.0 <= sleeps[1] <= 1.3


def test_a_batch_aborts_when_the_database_stays_down(dbs):
    district, state, path = dbs
    short_busy_timeout(state, ms=20)
    thread = hold_write_lock(path, 2.0)
    with pytest.raises(BatchAborted) as info:
        sync_keys(
            district,
            state,
            PERSON,
            D,
            [1, 2, 3, 6],
            retry=RetryPolicy(attempts=2, sleep=lambda s: None),
            abort_after=2,
        )
    thread.join()
    # Key 1 is unchanged (read only); 2 and 3 exhaust their retries; 6 is never tried.
    assert [o.outcome for o in info.value.outcomes] == [
        Outcome.UNCHANGED,
        Outcome.FAILED,
        Outcome.FAILED,
    ]
    assert info.value.remaining == [6]
    assert is_transient(info.value)
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, BatchAborted) and is_transient(copy)


def test_a_transient_fault_replaces_the_batch_connection(dbs):
    district, state, path = dbs
    short_busy_timeout(state, ms=50)
    checkouts, invalidated = [], []
    event.listen(state, "checkout", lambda *args: checkouts.append(1))
    event.listen(state, "invalidate", lambda *args: invalidated.append(1))
    thread = hold_write_lock(path, 0.6)
    outs = sync_keys(
        district,
        state,
        PERSON,
        D,
        [2, 3],
        retry=RetryPolicy(attempts=20, backoff_s=0.05, jitter=0.0),
    )
    thread.join()
    assert [o.outcome for o in outs] == [Outcome.SYNCED, Outcome.SYNCED]
    assert outs[0].attempts > 1 and outs[1].attempts == 1
    # Each fault discarded the connection; each retry (and nothing else) checked out anew.
    assert len(invalidated) == outs[0].attempts - 1
    assert len(checkouts) == outs[0].attempts
    for key in (2, 3):
        assert_key_equal(district, state, PERSON, key)


# ------------------------------------------------------------------ classification


def _wrap(cls, orig, **kw):
    return cls("INSERT ...", {}, orig, **kw)


def test_is_transient_classification():
    import psycopg
    import pymysql

    assert is_transient(_wrap(OperationalError, sqlite3.OperationalError("database is locked")))
    assert not is_transient(_wrap(OperationalError, sqlite3.OperationalError("no such table: x")))
    assert not is_transient(
        _wrap(IntegrityError, sqlite3.IntegrityError("FOREIGN KEY constraint failed"))
    )
    assert is_transient(
        _wrap(OperationalError, Exception("server closed"), connection_invalidated=True)
    )
    for code in (2006, 2013, 1205, 1213):
        assert is_transient(_wrap(OperationalError, pymysql.err.OperationalError(code, "x")))
    assert not is_transient(_wrap(OperationalError, pymysql.err.OperationalError(1045, "denied")))
    assert not is_transient(_wrap(IntegrityError, pymysql.err.IntegrityError(1452, "fk")))
    for cls in (
        psycopg.errors.DeadlockDetected,
        psycopg.errors.SerializationFailure,
        psycopg.errors.LockNotAvailable,
        psycopg.OperationalError,
    ):
        assert is_transient(_wrap(OperationalError, cls("x"))), cls
    assert not is_transient(_wrap(OperationalError, psycopg.errors.InvalidPassword("x")))
    assert not is_transient(_wrap(IntegrityError, psycopg.errors.ForeignKeyViolation("x")))
    assert not is_transient(ValueError("x"))
    assert is_transient(TransientFault("x"))


# ------------------------------------------------------------------ diagnosis


def test_find_problems_names_required_and_too_long_values(dbs):
    _, state, _ = dbs
    rows = {
        "person": [person(7, "S7", 70)],
        "identity": [identity(70, 7, None), identity(71, 7, "x" * 61, gender="Q")],
    }
    with state.connect() as conn:
        found = find_problems(conn, PERSON, D, rows)
    assert found.reason == (
        "last_name is required (identity 70); "
        "value too long for last_name: 61 characters, the state allows 60 (identity 71); "
        "gender code 'Q' has no state mapping"
    )
    assert found.missing_parent is None


def test_diagnosis_falls_back_to_the_error_text(dbs):
    _, state, _ = dbs
    rows = {"person": [person(7, "S7", 70)], "identity": []}
    error = _wrap(IntegrityError, sqlite3.IntegrityError("CHECK constraint failed: x\nmore"))
    found = diagnose_failure(state, PERSON, D, rows, error)
    assert found.reason == "the state refused the record: CHECK constraint failed: x"


def test_diagnosis_names_an_unregistered_district(dbs):
    _, state, _ = dbs
    with state.connect() as conn:
        found = find_problems(conn, PERSON, 999, {"person": [person(7, "S7", 70)]})
    assert found.reason == "district 999 is not registered at the state"


def test_diagnosis_never_reads_another_districts_parent(dbs):
    # Person 3 exists for district 312 at the state, not for 275: still missing for 275.
    district, state, _ = dbs
    with state.begin() as conn:
        conn.execute(
            delete(state_table("enrollment")).where(state_table("enrollment").c.enrollment_id < 0)
        )
    out = sync_key(district, state, ENROLLMENT, D, 101)
    assert out.reason == "parent PersonIdentity 3 is not at the state"


# ------------------------------------------------------------------ other dialects


@pytest.fixture(params=["postgresql", "mariadb"])
def server_state(request):
    """A fresh state database on a real server (started if needed), dropped after the test."""
    with server_database(request.param) as url:
        state = make_engine(url)
        try:
            fill_state(state)
            yield state
        finally:
            state.dispose()


def _server_checksum(engine, district_number):
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for name in ("state_person", "state_identity", "state_enrollment"):
            tab = state_metadata.tables[name]
            rows = conn.execute(
                select(tab)
                .where(tab.c.district_number == district_number)
                .order_by(*tab.primary_key.columns)
            )
            for row in rows:
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def test_real_server_dialects(dbs, server_state):
    district, _, _ = dbs
    state = server_state
    other_before = _server_checksum(state, OTHER)
    assert sync_key(district, state, PERSON, D, 1).outcome is Outcome.UNCHANGED

    # Several rows of one part go in one executemany upsert.
    with district.begin() as conn:
        conn.execute(
            update(district_table("identity"))
            .where(district_table("identity").c.person_id == 1)
            .values(first_name="Anna")
        )
    several = sync_key(district, state, PERSON, D, 1)
    assert {(c.row_id, c.action) for c in several.changes} == {(10, "update"), (11, "update")}
    assert_key_equal(district, state, PERSON, 1)

    out = sync_key(district, state, PERSON, D, 2)
    assert out.outcome is Outcome.SYNCED
    assert {(c.table, c.row_id, c.action) for c in out.changes} == {
        ("person", 2, "update"),
        ("identity", 22, "delete"),
    }
    assert_key_equal(district, state, PERSON, 2)
    assert sync_key(district, state, PERSON, D, 2).outcome is Outcome.UNCHANGED

    d_before = _server_checksum(state, D)
    failed = sync_key(district, state, PERSON, D, 4)
    assert failed.reason == "gender code 'X' has no state mapping"
    assert sync_key(district, state, ENROLLMENT, D, 101).reason == (
        "parent PersonIdentity 3 is not at the state"
    )
    assert _server_checksum(state, D) == d_before

    deps = sync_with_dependencies(district, state, ENROLLMENT, D, 101)
    assert deps.outcome is Outcome.SYNCED and deps.parents_synced == ["PersonIdentity 3"]
    assert_key_equal(district, state, PERSON, 3)
    assert_key_equal(district, state, ENROLLMENT, 101)
    batch = sync_keys(district, state, PERSON, D, [1, 2, 3, 999])
    assert [o.outcome for o in batch] == [Outcome.UNCHANGED] * 3 + [Outcome.NOT_FOUND]

    # SQLite keeps a 70-character name; a real server refuses it.
    with district.begin() as conn:
        conn.execute(
            update(district_table("identity"))
            .where(district_table("identity").c.identity_id == 60)
            .values(last_name="y" * 70)
        )
    too_long = sync_key(district, state, PERSON, D, 6)
    assert too_long.outcome is Outcome.FAILED
    assert too_long.reason == (
        "value too long for last_name: 70 characters, the state allows 60 (identity 60)"
    )
    assert _server_checksum(state, OTHER) == other_before


def test_real_server_stale_snapshot(dbs, server_state):
    # The checked writes (IS NOT DISTINCT FROM / <=>, row counts, a key conflict that
    # aborts a PostgreSQL transaction) behave on the real servers as on SQLite.
    district, _, _ = dbs
    other_before = _server_checksum(server_state, OTHER)
    _stale_snapshot_batch(district, server_state)
    again = sync_keys(district, server_state, PERSON, D, [1, 2, 3, 6])
    assert {o.outcome for o in again} == {Outcome.UNCHANGED}
    assert _server_checksum(server_state, OTHER) == other_before
