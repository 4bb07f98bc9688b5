"""A sync leaves the state holding exactly the district's values, on every vendor pair.

Verification ignores trailing white space (``trim``) and the form a date is stored in
(``date``); a sync of a key does not: afterwards every carried row at the state is the
district's, byte for byte, after the one conversion the state column's type makes (a
date is a date; SQLite stores it as 'YYYY-MM-DD' text). Every district × state pair of
SQLite, PostgreSQL and MariaDB, not only the matrix's five: a date kept as text with a
time exists only where a side is SQLite, so SQLite → server and server → SQLite matter.

The migrations make every text column VARCHAR, so the first "padded" case is what a
padded state ID really is there: a VARCHAR holding trailing spaces, which all three vendors
keep and return (MariaDB's PAD SPACE collations even compare 'x  ' equal to 'x', but store
and return the spaces). A state whose column was made CHAR(n) by hand, where PostgreSQL
and MariaDB pad (SQLite keeps any text as given), is the second test: there the padding
is how the state stores the district's value, so it is no reason to write.
"""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from helpers import rows_checksum
from sqlalchemy import Engine, insert, text
from test_reports import NOW, docx_sections, pdf_sections

from selective_sync.db import make_engine
from selective_sync.history.ledger import LedgerHistory
from selective_sync.initdb import (
    create_district_schema,
    create_state_schema,
    upgrade_engine,
)
from selective_sync.ledger import (
    KeyRecorder,
    finish_request,
    open_request,
    read_keys,
    read_request,
)
from selective_sync.models import KeyOutcome, Outcome, RequestStatus
from selective_sync.reconcile import DEFAULT_MAX_KEYS, plan_object
from selective_sync.registry import get_object
from selective_sync.reports import render_docx, render_pdf, sync_report_from_result
from selective_sync.schema import district_table, state_table
from selective_sync.sync import sync_key, sync_keys
from selective_sync.verification.engine import verify_object

from .conftest import database

KINDS = ("sqlite", "postgresql", "mariadb")
ALL_PAIRS = [(d, s) for d in KINDS for s in KINDS]
D, OTHER = 275, 312
DISTRICTS = {D: "MAPLE VALLEY", OTHER: "OAK RIDGE"}
PERSON = get_object("PersonIdentity")
DAY = dt.date(2010, 5, 1)

PADDED, TAB, CRLF, TIME_AT_STATE, TIME_AT_DISTRICT, NULL_EMPTY, EMPTY_NULL, SAME = (
    21214,
    22904,
    27342,
    30001,
    30002,
    30003,
    30004,
    30005,
)
KEYS = [PADDED, TAB, CRLF, TIME_AT_STATE, TIME_AT_DISTRICT, NULL_EMPTY, EMPTY_NULL, SAME]
HISTORY = TAB * 10  # the TAB person's earlier identity: a carried child row, not compared

# Written at the state after the clean copy, for both districts:
# (table, column, id column, row id, value).
STATE_NOISE = [
    ("state_person", "state_id", "person_id", PADDED, "1387440113  "),
    ("state_identity", "last_name", "identity_id", TAB * 10 + 1, "Ford\t"),
    ("state_identity", "last_name", "identity_id", HISTORY, "Fordham "),
    ("state_identity", "effective_date", "identity_id", HISTORY, "2009-01-01T00:00:00"),
    ("state_identity", "first_name", "identity_id", CRLF * 10 + 1, "Ann\r\n"),
    ("state_identity", "birth_date", "identity_id", TIME_AT_STATE * 10 + 1, "2010-05-01 00:00:00"),
    ("state_identity", "middle_name", "identity_id", NULL_EMPTY * 10 + 1, ""),
    ("state_identity", "suffix", "identity_id", EMPTY_NULL * 10 + 1, None),
]
"""A text date goes in as text: SQLite keeps it; a server's DATE column keeps the date."""


def expected_reasons(state_kind: str) -> dict[int, str | None]:
    """Each key's reason after a real sync (None: unchanged). A DATE column of a server
    stores '2010-05-01 00:00:00' as the date itself, so only a SQLite state keeps a time."""
    text_dates = state_kind == "sqlite"
    return {
        PADDED: "changed 1 row (1 update): white space only",
        TAB: "changed 2 rows (2 update): white space"
        + (" and date/time form" if text_dates else "")
        + " only",
        CRLF: "changed 1 row (1 update): white space only",
        TIME_AT_STATE: "changed 1 row (1 update): date/time form only" if text_dates else None,
        TIME_AT_DISTRICT: None,
        NULL_EMPTY: "changed 1 row (1 update)",
        EMPTY_NULL: "changed 1 row (1 update)",
        SAME: None,
    }


# ------------------------------------------------------------------ databases


@dataclass
class Pair:
    district_kind: str
    state_kind: str
    state_url: str
    district: Engine
    state: Engine


def _person(pid: int) -> dict:
    return {"person_id": pid, "state_id": f"S{pid}", "current_identity_id": pid * 10 + 1}


def _identity(iid: int, pid: int, last: str, **values) -> dict:
    row = {
        "identity_id": iid,
        "person_id": pid,
        "last_name": last,
        "first_name": "Ann",
        "middle_name": None,
        "suffix": None,
        "birth_date": dt.date(2008, 3, 4),
        "gender": "F",
        "race_ethnicity": "6",
        "effective_date": DAY,
    }
    return {**row, **values}


def district_rows() -> dict[str, list[dict]]:
    persons = [_person(k) for k in KEYS]
    persons[0]["state_id"] = "1387440113"
    identities = [_identity(k * 10 + 1, k, "Ford" if k == TAB else f"Name{k}") for k in KEYS]
    identities.append(_identity(HISTORY, TAB, "Fordham", effective_date=dt.date(2009, 1, 1)))
    by_id = {r["identity_id"]: r for r in identities}
    by_id[TIME_AT_STATE * 10 + 1]["birth_date"] = DAY
    by_id[TIME_AT_DISTRICT * 10 + 1]["birth_date"] = DAY
    by_id[EMPTY_NULL * 10 + 1]["suffix"] = ""
    return {"person": persons, "identity": identities}


def _schemas(district: Engine, state: Engine) -> None:
    # As the demo and init-db make them: the migrations on servers, create_all on SQLite.
    if district.dialect.name == "sqlite":
        create_district_schema(district)
    else:
        upgrade_engine(district, "district")
    if state.dialect.name == "sqlite":
        create_state_schema(state, DISTRICTS)
    else:
        upgrade_engine(state, "state", districts=DISTRICTS)


def fill(district: Engine, state: Engine) -> None:
    """Clean copies at the state for both districts, then the noise at the state (both
    districts: the other one's must survive every sync byte for byte)."""
    rows = district_rows()
    with district.begin() as conn:
        for name, table_rows in rows.items():
            conn.execute(insert(district_table(name)), table_rows)
        # Where the district keeps dates as text, one is kept with a time.
        conn.execute(
            text("UPDATE identity SET birth_date = :v WHERE identity_id = :k"),
            {"v": "2010-05-01 00:00:00", "k": TIME_AT_DISTRICT * 10 + 1},
        )
    with state.begin() as conn:
        for number in DISTRICTS:
            for name, table_rows in rows.items():
                conn.execute(
                    insert(state_table(name)),
                    [{**r, "district_number": number} for r in table_rows],
                )
    add_noise(state)


def add_noise(state: Engine) -> None:
    with state.begin() as conn:
        for table, column, id_name, key, value in STATE_NOISE:
            conn.execute(
                text(f"UPDATE {table} SET {column} = :v WHERE {id_name} = :k"),
                {"v": value, "k": key},
            )


def new_pair(stack: ExitStack, district_kind: str, state_kind: str, folder) -> Pair:
    """New district and state databases of these kinds, with the schemas (closed and
    dropped by ``stack``)."""
    district_url = stack.enter_context(database(district_kind, folder, "district"))
    state_url = stack.enter_context(database(state_kind, folder, "state"))
    district = make_engine(district_url, must_exist=False)
    stack.callback(district.dispose)
    state = make_engine(state_url, must_exist=False)
    stack.callback(state.dispose)
    _schemas(district, state)
    return Pair(district_kind, state_kind, state_url, district, state)


@pytest.fixture(params=ALL_PAIRS, ids=[f"{d}-to-{s}" for d, s in ALL_PAIRS])
def pair(request, tmp_path):
    with ExitStack() as stack:
        made = new_pair(stack, *request.param, tmp_path)
        fill(made.district, made.state)
        yield made


# ------------------------------------------------------------------ byte-level reads

_AS_BYTES = {
    "sqlite": "CAST({} AS BLOB)",
    "postgresql": "convert_to({}, 'UTF8')",
    "mysql": "CAST({} AS BINARY)",
    "mariadb": "CAST({} AS BINARY)",
}


def _stored(engine: Engine, table, link: str, district_number: int | None) -> dict:
    """{id: row} of the keys' rows as stored: text as its bytes, SQLite dates as the
    bytes of their text, server dates as dates, integers as integers."""
    dialect = engine.dialect.name
    id_name = table.primary_key.columns.keys()[-1]
    names = [c.name for c in district_table(table.name.removeprefix("state_")).columns]
    exprs = []
    for name in names:
        type_name = type(table.c[name].type).__name__
        raw = type_name == "String" or (type_name == "Date" and dialect == "sqlite")
        exprs.append(_AS_BYTES[dialect].format(name) if raw else name)
    keys = ", ".join(str(k) for k in KEYS)
    where = f"{link} IN ({keys})"
    if district_number is not None:
        where += f" AND district_number = {district_number}"
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT {', '.join(exprs)} FROM {table.name} WHERE {where} ORDER BY {id_name}"
        ).all()
    at = names.index(id_name)
    found = {}
    for row in rows:
        values = (bytes(v) if isinstance(v, memoryview) else v for v in row)
        found[row[at]] = dict(zip(names, values, strict=True))
    return found


def _as_state_stores(value, type_name: str, district_dialect: str, state_dialect: str):
    """A district value (as ``_stored`` read it) in the form the state stores it."""
    if type_name != "Date" or value is None:
        return value
    day = dt.date.fromisoformat(value[:10].decode()) if district_dialect == "sqlite" else value
    return day.isoformat().encode() if state_dialect == "sqlite" else day


def byte_differences(pair: Pair) -> list[tuple]:
    """Every difference between the keys' carried rows at the state and the district's."""
    found = []
    for part in PERSON.parts:
        dtab, stab = district_table(part.table), state_table(part.table)
        have = _stored(pair.state, stab, part.link, D)
        want = {
            rid: {
                name: _as_state_stores(
                    value,
                    type(dtab.c[name].type).__name__,
                    pair.district.dialect.name,
                    pair.state.dialect.name,
                )
                for name, value in row.items()
            }
            for rid, row in _stored(pair.district, dtab, part.link, None).items()
        }
        for rid in sorted(set(have) | set(want)):
            if have.get(rid) != want.get(rid):
                found.append((part.table, rid, have.get(rid), want.get(rid)))
    return found


# ------------------------------------------------------------------ the test


def test_a_sync_leaves_exactly_the_districts_values(pair, tmp_path):
    district, state = pair.district, pair.state
    reasons = expected_reasons(pair.state_kind)
    other_before = rows_checksum(pair.state_url, OTHER)
    assert byte_differences(pair), "the noise was not written"

    # Verification keeps the registry's normalisation: only NULL against '' is drift, for
    # the keys asked for and for the whole district, so the nightly sends only those two.
    before = verify_object(district, state, PERSON, D, KEYS)
    assert {i.key: i.issue for i in before.issues} == {
        NULL_EMPTY: "mismatched",
        EMPTY_NULL: "mismatched",
    }
    nightly = plan_object(verify_object(district, state, PERSON, D), DEFAULT_MAX_KEYS)
    assert nightly.keys == [NULL_EMPTY, EMPTY_NULL]

    # A dry run says what the sync will write, with the same exact test.
    unchanged_before = rows_checksum(pair.state_url)
    planned = {o.key: o for o in sync_keys(district, state, PERSON, D, KEYS, dry_run=True)}
    assert rows_checksum(pair.state_url) == unchanged_before
    for key, reason in reasons.items():
        expect = (
            f"dry run: would change {reason.removeprefix('changed ')}; nothing written"
            if reason
            else "dry run: already identical at the state; nothing written"
        )
        assert planned[key].reason == expect, key

    # The batch path (snapshot, checked updates), recorded in the ledger.
    outcomes = _recorded_sync(pair, "exact-sync-run-0001")
    _assert_reasons(outcomes, reasons)
    assert {k: o.changes for k, o in outcomes.items()} == {k: o.changes for k, o in planned.items()}
    assert byte_differences(pair) == []
    assert verify_object(district, state, PERSON, D, KEYS).issues == []

    # The ledger and the reports (rebuilt from it) show these keys as synced.
    recorded = {r.key: r for r in read_keys(state, "exact-sync-run-0001")}
    for key, reason in reasons.items():
        row = recorded[key]
        assert row.outcome == ("synced" if reason else "unchanged"), (key, row)
        assert row.reason == (reason or "already identical at the state")
        assert (row.written_at is not None) == bool(reason), (key, row)
    history = LedgerHistory(state, DISTRICTS, heartbeat_s=60.0)
    result = history.full_entry(read_request(state, "exact-sync-run-0001")).to_sync_result()
    report = sync_report_from_result(result, NOW)
    pdf = render_pdf(report, tmp_path / "sync.pdf")
    docx = render_docx(report, tmp_path / "sync.docx")
    marks = {k: "" if reason else "*" for k, reason in reasons.items()}
    assert pdf_sections(pdf, report.district_line)["successful"] == marks
    assert docx_sections(docx)["successful"] == marks

    # The single-key path (re-read and upsert in the key's transaction) does the same.
    add_noise(state)
    for key, reason in reasons.items():
        out = sync_key(district, state, PERSON, D, key)
        assert out.reason == (reason or "already identical at the state"), key
    assert byte_differences(pair) == []

    # A second sync of the same keys finds them identical, on both paths, and writes nothing.
    after = rows_checksum(pair.state_url)
    again = sync_keys(district, state, PERSON, D, KEYS)
    assert [o.outcome for o in again] == [Outcome.UNCHANGED] * len(KEYS), again
    for key in KEYS:
        out = sync_key(district, state, PERSON, D, key)
        assert out.outcome is Outcome.UNCHANGED, out
    assert rows_checksum(pair.state_url) == after
    assert rows_checksum(pair.state_url, OTHER) == other_before


def _recorded_sync(pair: Pair, run_id: str) -> dict[int, KeyOutcome]:
    open_request(
        pair.state,
        run_id=run_id,
        run_name=f"PersonIdentity x{len(KEYS)} by test-admin",
        district=D,
        object_name="PersonIdentity",
        requested_by="test-admin",
        requested_at=NOW,
        check_dependencies=False,
        dry_run=False,
        keys=KEYS,
    )
    outcomes = sync_keys(pair.district, pair.state, PERSON, D, KEYS, recorder=KeyRecorder(run_id))
    finish_request(
        pair.state,
        run_id,
        RequestStatus.COMPLETE,
        completed_at=NOW,
        outcomes=[("PersonIdentity", o) for o in outcomes],
    )
    return {o.key: o for o in outcomes}


def _assert_reasons(outcomes: dict[int, KeyOutcome], reasons: dict[int, str | None]) -> None:
    for key, reason in reasons.items():
        out = outcomes[key]
        if reason:
            assert (out.outcome, out.reason) == (Outcome.SYNCED, reason), out
        else:
            assert (out.outcome, out.reason) == (
                Outcome.UNCHANGED,
                "already identical at the state",
            ), out


# ------------------------------------------------------------------ a padded CHAR column

SERVER_STATE_PAIRS = [(d, s) for d in KINDS for s in ("postgresql", "mariadb")]
CHAR_EQUAL, CHAR_SPACES_AT_DISTRICT, CHAR_DIFFERS, CHAR_AND_NAME = 40001, 40002, 40003, 40004
CHAR_KEYS = [CHAR_EQUAL, CHAR_SPACES_AT_DISTRICT, CHAR_DIFFERS, CHAR_AND_NAME]
CHAR_STATE_ID = {  # the district's state ID, and the one written at the state before
    CHAR_EQUAL: ("1387440113", "1387440113"),
    CHAR_SPACES_AT_DISTRICT: ("S40002  ", "S40002"),
    CHAR_DIFFERS: ("S40003", "S49999"),
    CHAR_AND_NAME: ("S40004 ", "S40004"),
}
_TO_CHAR = {
    "postgresql": "ALTER TABLE state_person ALTER COLUMN state_id TYPE CHAR(12)",
    "mariadb": "ALTER TABLE state_person MODIFY state_id CHAR(12)",
}


@pytest.fixture(params=SERVER_STATE_PAIRS, ids=[f"{d}-to-{s}" for d, s in SERVER_STATE_PAIRS])
def char_pair(request, tmp_path):
    """A state whose ``state_id`` is CHAR(12) (PostgreSQL keeps and returns the padding,
    MariaDB keeps it and strips it on read), the keys' persons at both sides."""
    with ExitStack() as stack:
        made = new_pair(stack, *request.param, tmp_path)
        district, state = made.district, made.state
        with state.begin() as conn:
            conn.exec_driver_sql(_TO_CHAR[made.state_kind])
        persons = [{**_person(k), "state_id": CHAR_STATE_ID[k][0]} for k in CHAR_KEYS]
        identities = [_identity(k * 10 + 1, k, f"Name{k}") for k in CHAR_KEYS]
        with district.begin() as conn:
            conn.execute(insert(district_table("person")), persons)
            conn.execute(insert(district_table("identity")), identities)
        with state.begin() as conn:
            for number in DISTRICTS:
                at_state = [{**p, "state_id": CHAR_STATE_ID[p["person_id"]][1]} for p in persons]
                conn.execute(
                    insert(state_table("person")),
                    [{**p, "district_number": number} for p in at_state],
                )
                conn.execute(
                    insert(state_table("identity")),
                    [{**r, "district_number": number} for r in identities],
                )
            conn.execute(
                text("UPDATE state_identity SET last_name = 'Other' WHERE identity_id = :i"),
                {"i": CHAR_AND_NAME * 10 + 1},
            )
        yield made


def _char_state_ids(pair: Pair) -> dict[int, str]:
    """Each key's state ID as the state's driver returns it (padded on PostgreSQL)."""
    keys = ", ".join(map(str, CHAR_KEYS))
    with pair.state.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT person_id, state_id FROM state_person WHERE district_number = {D} "
            f"AND person_id IN ({keys})"
        ).all()
    return dict(rows)


def _as_char_stores(value: str, state_kind: str) -> str:
    """The district's value as a CHAR(12) of ``state_kind`` returns it."""
    bare = value.rstrip(" ")
    return bare.ljust(12) if state_kind == "postgresql" else bare


def test_a_padded_char_column_is_compared_as_the_state_stores_it(char_pair):
    """A CHAR column's padding is not a difference: a key whose only difference is
    trailing spaces there is unchanged (no write, every sync), one whose CHAR value
    differs is written, and afterwards the state holds the district's value as CHAR
    stores it."""
    pair = char_pair
    district, state = pair.district, pair.state
    assert _char_state_ids(pair)[CHAR_EQUAL] == _as_char_stores("1387440113", pair.state_kind)
    other_before = rows_checksum(pair.state_url, OTHER)
    reasons = {
        CHAR_EQUAL: None,
        CHAR_SPACES_AT_DISTRICT: None,
        CHAR_DIFFERS: "changed 1 row (1 update)",
        CHAR_AND_NAME: "changed 1 row (1 update)",
    }

    planned = {o.key: o for o in sync_keys(district, state, PERSON, D, CHAR_KEYS, dry_run=True)}
    for key, reason in reasons.items():
        assert planned[key].outcome is (Outcome.SYNCED if reason else Outcome.UNCHANGED), key
    # The key whose name differs is written for its name only, not its state ID.
    (name_change,) = planned[CHAR_AND_NAME].changes
    assert [c.column for c in name_change.columns] == ["last_name"]

    outcomes = {o.key: o for o in sync_keys(district, state, PERSON, D, CHAR_KEYS)}
    _assert_reasons(outcomes, reasons)
    have = _char_state_ids(pair)
    for key in CHAR_KEYS:
        assert have[key] == _as_char_stores(CHAR_STATE_ID[key][0], pair.state_kind), key
    assert verify_object(district, state, PERSON, D, CHAR_KEYS).issues == []

    # Every later sync, on both paths, finds every key identical and writes nothing.
    after = rows_checksum(pair.state_url)
    again = sync_keys(district, state, PERSON, D, CHAR_KEYS)
    assert [o.outcome for o in again] == [Outcome.UNCHANGED] * len(CHAR_KEYS), again
    for key in CHAR_KEYS:
        assert sync_key(district, state, PERSON, D, key).outcome is Outcome.UNCHANGED, key
    assert rows_checksum(pair.state_url) == after
    assert rows_checksum(pair.state_url, OTHER) == other_before
