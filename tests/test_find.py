"""Find IDs: filters over the district database, the CLI, the flow and its artifacts.

Expected answers come from plain sqlite3 queries over the test's own demo copy and a
separate accent folding (NFKD, ASCII only), never from the code under test.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import unicodedata
from datetime import date

import pytest
from typer.testing import CliRunner

from selective_sync.errors import BadInput
from selective_sync.find import (
    MAX_LIMIT,
    FindObject,
    SummaryKind,
    build_query,
    find_records,
)
from selective_sync.rights import RightsError

DISTRICT = 275
CLI = [sys.executable, "-m", "flows.cli"]


# ---------------------------------------------------------------- helpers


def plain(text: str | None) -> str:
    """An independent fold: accents dropped, lower case, spaces trimmed."""
    if text is None:
        return ""
    ascii_only = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_only.strip(" ").lower()


def persons(demo) -> list[tuple]:
    """(person_id, state_id, last, first, birth_date text) of every district person."""
    with sqlite3.connect(demo.dir / "district.db") as conn:
        return conn.execute(
            "SELECT p.person_id, p.state_id, i.last_name, i.first_name, i.birth_date "
            "FROM person p LEFT JOIN identity i ON i.identity_id = p.current_identity_id"
        ).fetchall()


def enrollments(demo) -> list[tuple]:
    """(enrollment_id, person_id, school_id, grade, end_year) of every district enrollment."""
    with sqlite3.connect(demo.dir / "district.db") as conn:
        return conn.execute(
            "SELECT enrollment_id, person_id, school_id, grade, end_year FROM enrollment"
        ).fetchall()


def execute(demo, sql: str, params: tuple = ()) -> None:
    with sqlite3.connect(demo.dir / "district.db") as conn:
        conn.execute(sql, params)


def find(demo, **filters):
    from selective_sync.db import make_engine

    engine = make_engine(demo.district_url)
    try:
        return find_records(engine, build_query(limit=MAX_LIMIT, **filters), DISTRICT)
    finally:
        engine.dispose()


def invoke(args: list[str]):
    """The CLI in-process (a subprocess would start its own ephemeral API)."""
    from flows.cli import app, register

    if not any(command.callback.__name__ == "find" for command in app.registered_commands):
        register()
    return CliRunner().invoke(app, ["find", *args])


def run_cli(args: list[str], demo) -> subprocess.CompletedProcess:
    """The CLI as a person runs it: a real process, its stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELECTIVE_SYNC_")}
    env.update(SELECTIVE_SYNC_DATA_DIR=str(demo.dir), COLUMNS="200")
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables as wide as they want (CliRunner's terminal is 80 columns)."""
    from rich.console import Console

    from selective_sync.cli import find as find_cli

    monkeypatch.setattr(find_cli, "console", Console(width=250))


# ---------------------------------------------------------------- filters


def expected_persons(demo, name: str) -> tuple[dict, set[int]]:
    """The filters of case ``name`` and the personIDs they must find."""
    people = persons(demo)
    sample = next(p for p in sorted(people) if p[1] and p[2] and p[2].isascii() and p[4])
    school_persons = {e[1] for e in enrollments(demo) if e[2] == 110 and e[3] == "05"}
    cases = {
        "last": (
            {"last": sample[2][:3].upper()},
            {p[0] for p in people if plain(p[2]).startswith(sample[2][:3].lower())},
        ),
        "first": ({"first": "a"}, {p[0] for p in people if plain(p[3]).startswith("a")}),
        "birth_date": (
            {"birth_date": sample[4][:10]},
            {p[0] for p in people if (p[4] or "")[:10] == sample[4][:10]},
        ),
        "state_id": ({"state_id": sample[1]}, {p[0] for p in people if p[1] == sample[1]}),
        "school_grade": ({"school": "110", "grade": "5"}, school_persons),
        "end_year": ({"end_year": 2025}, {e[1] for e in enrollments(demo) if e[4] == 2025}),
    }
    return cases[name]


@pytest.mark.parametrize(
    "name", ["last", "first", "birth_date", "state_id", "school_grade", "end_year"]
)
def test_each_filter_finds_exactly_the_matching_persons(demo, name):
    filters, expected = expected_persons(demo, name)
    assert expected, f"the demo should hold a match for {name}"
    result = find(demo, object="PersonIdentity", **filters)
    assert set(result.ids) == expected
    assert result.total == len(expected) and result.more == 0
    assert len(result.ids) == len(set(result.ids))


def test_enrollment_filters_find_exactly_the_matching_enrollments(demo):
    rows = enrollments(demo)
    people = {p[0]: p for p in persons(demo)}
    by_school = {e[0] for e in rows if e[2] == 130 and e[4] == 2026}
    result = find(demo, object="Enrollment", school="Lakeview", end_year="2026")
    assert by_school and set(result.ids) == by_school
    assert result.filters["school"] == "130 Lakeview Elementary"

    grade_kg = {e[0] for e in rows if e[3] == "KG"}
    assert set(find(demo, object="Enrollment", grade="k").ids) == grade_kg

    # Person filters over enrollments: every enrollment of the persons named like this.
    named = {e[0] for e in rows if plain(people[e[1]][2]).startswith("m")}
    result = find(demo, object="Enrollment", last="M", grade=None)
    assert named and set(result.ids) == named
    record = next(r for r in result.records if r.enrollment_id == min(named))
    source = next(e for e in rows if e[0] == record.enrollment_id)
    assert (record.person_id, record.school_id, record.grade, record.end_year) == source[1:]
    assert record.last_name == people[source[1]][2]


def test_names_ignore_case_accents_and_surrounding_spaces(demo):
    people = sorted(persons(demo))
    a, b, c = people[10][0], people[20][0], people[30][0]
    identity = (
        "UPDATE identity SET last_name = ?, first_name = ?, birth_date = ? WHERE identity_id = "
        "(SELECT current_identity_id FROM person WHERE person_id = ?)"
    )
    # A hand-edited date with a time, as some districts store them.
    execute(demo, identity, ("Özdemir", "José", "2011-02-03 00:00:00", a))
    execute(demo, identity, ("OZDEMIR", "jose", "2011-02-04", b))
    execute(demo, identity, ("  Ångström", "Søren", "2011-02-05", c))

    everyone = persons(demo)
    oz = {p[0] for p in everyone if plain(p[2]).startswith("oz")}
    assert {a, b} <= oz
    assert set(find(demo, last="ÖZ").ids) == oz
    assert set(find(demo, last="oz").ids) == oz
    assert set(find(demo, last="özdemir", first="JOSÉ").ids) == {a, b}
    assert set(find(demo, last="Ozd", first="jose").ids) == {a, b}
    assert c in find(demo, last="angst").ids  # leading spaces are trimmed
    assert c in find(demo, first="soren").ids  # ø has no decomposition: folded to o
    found = find(demo, birth_date="2011-02-03")
    assert a in found.ids
    assert next(r for r in found.records if r.key == a).birth_date == date(2011, 2, 3)
    assert a in find(demo, birth_date="02/03/2011").ids

    # Enrollments of the accented persons, found through their names.
    theirs = {e[0] for e in enrollments(demo) if e[1] in (a, b)}
    assert set(find(demo, object="Enrollment", last="ÖZDEM", first="jose").ids) == theirs

    # Filters are bound parameters: LIKE wildcards and quotes are just characters.
    assert find(demo, last="%").total == 0
    assert find(demo, last="_").total == 0
    assert find(demo, last="' OR 1=1 --").total == 0


def test_cli_cap_default_and_more_note(demo, admin):
    expected = {e[1] for e in enrollments(demo) if e[4] == 2026}
    assert len(expected) > 120

    capped = json.loads(
        invoke(["--end-year", "2026", "--limit", "7", "--json", "--user", admin]).stdout
    )
    assert capped["total"] == len(expected)
    assert capped["shown"] == 7 and len(capped["ids"]) == 7 and set(capped["ids"]) <= expected
    assert capped["more"] == len(expected) - 7
    lasts = [plain(r["last_name"]) for r in capped["records"]]
    assert lasts == sorted(lasts)

    table = invoke(["--end-year", "2026", "--user", admin])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    rows = [line for line in lines if re.match(r"\d+ ", line) and "more match" not in line]
    assert len(rows) == 100  # the default cap
    assert {int(line.split()[0]) for line in rows} <= expected
    assert f"{len(expected) - 100:,} more match (showing 100 of {len(expected):,})" in table.stdout

    ids_only = invoke(["--end-year", "2026", "--limit", "5", "--ids-only", "--user", admin])
    assert ids_only.exit_code == 0
    line = ids_only.stdout.strip()
    assert "\n" not in line and len(line.split(",")) == 5
    assert {int(x) for x in line.split(",")} <= expected
    assert f"{len(expected) - 5:,} more match" in ids_only.stderr


def test_json_document(demo, admin):
    done = invoke(
        ["--object", "Enrollment", "--school", "310", "--grade", "9", "--json", "-u", admin]
    )
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    expected = {e[0] for e in enrollments(demo) if e[2] == 310 and e[3] == "09"}
    assert set(document["ids"]) == expected and document["total"] == len(expected)
    assert document["object"] == "Enrollment" and document["key_label"] == "enrollmentID"
    record = document["records"][0]
    assert (
        record["key"] == record["enrollment_id"] and record["school_name"] == "Valley High School"
    )
    assert record["grade"] == "09" and record["at_district"] is True


# ---------------------------------------------------------------- refusals


def test_empty_filter_set_is_refused_and_prints_no_data(demo, admin):
    proc = run_cli(["find", "--object", "Enrollment", "--user", admin], demo)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: give at least one filter"), proc.stderr

    blank = run_cli(["find", "--first", "  ", "--user", admin], demo)
    assert blank.returncode == 1 and blank.stdout == ""
    assert blank.stderr.strip() == "error: first name filter is empty"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--object", "Transcript", "--last", "a"], "unknown object 'Transcript'"),
        (["--object", "Graduation", "--last", "a"], "unknown object 'Graduation'"),
        (["--last", "a", "--birth-date", "2012-13-40"], "birth date '2012-13-40' is not a date"),
        (["--grade", "13"], "grade '13' is not a grade"),
        (["--grade", "fifth!"], "grade 'fifth!' is not a grade"),
        (["--last", "a", "--limit", "-5"], "limit -5 is out of range"),
        (["--last", "a", "--limit", "0"], "limit 0 is out of range"),
        (["--last", "a", "--limit", str(MAX_LIMIT + 1)], "is out of range"),
        (["--last", "a", "--limit", "many"], "limit must be a whole number"),
        (["--end-year", "26x"], "end year must be a whole number"),
        (["--end-year", "26"], "end year 26 is not"),
        (["--school", "Nowhere High"], "unknown school 'Nowhere High'"),
        (["--school", "999"], "unknown school '999'"),
        (["--from-summary", "bogus"], "unknown summary list 'bogus'"),
        (["--from-summary", "missing_at_district", "--grade", "5"], "filters cannot apply"),
        (["--last", "a", "--json", "--ids-only"], "choose one of --json and --ids-only"),
    ],
)
def test_bad_input_is_one_clear_error(demo, admin, args, named):
    done = invoke([*args, "--user", admin])
    assert isinstance(done.exception, BadInput), (done.exception, done.output)
    assert named in str(done.exception)
    assert "\n" not in str(done.exception)
    assert done.stdout == ""


def test_bad_input_from_a_real_process_is_one_error_line(demo, admin):
    proc = run_cli(["find", "--school", "Nowhere", "--user", admin], demo)
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = [line for line in proc.stderr.splitlines() if line.strip()]
    assert (
        line.startswith("error: unknown school 'Nowhere'") and "110 Alder Creek Elementary" in line
    )


def test_school_names_resolve_or_are_ambiguous(demo, admin):
    execute(demo, "INSERT INTO school (school_id, name) VALUES (?, ?)", (140, "Alder Creek Annex"))
    ambiguous = invoke(["--school", "alder", "--user", admin])
    assert isinstance(ambiguous.exception, BadInput)
    assert "ambiguous" in str(ambiguous.exception) and "140 Alder Creek Annex" in str(
        ambiguous.exception
    )
    exact = find(demo, object="Enrollment", school="ALDER CREEK ELEMENTARY")
    assert exact.filters["school"] == "110 Alder Creek Elementary"
    assert set(exact.ids) == {e[0] for e in enrollments(demo) if e[2] == 110}


def test_reading_needs_the_r_right(demo, admin):
    refused = invoke(["--last", "a", "--json", "--user", "nobody"])
    assert isinstance(refused.exception, RightsError)
    assert "nobody" in str(refused.exception)
    assert refused.stdout == ""


# ---------------------------------------------------------------- with a Prefect API


@pytest.fixture
def empty_summary_store(prefect_api):
    """District 275 with no stored Verification Summary, before and after: the API is
    shared by the whole session, and every demo is district 275."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from selective_sync.verification.codec import issues_key, summary_key

    def clear() -> None:
        keys = [summary_key(DISTRICT), issues_key(DISTRICT)]
        with get_client(sync_client=True) as client:
            while page := client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)), limit=200
            ):
                for artifact in page:
                    client.delete_artifact(artifact.id)

    clear()
    yield
    clear()


def store_summary(admin: str) -> None:
    from flows.verification_summary import verification_summary

    state = verification_summary(requested_by=admin, return_state=True)
    assert state.is_completed(), state.message


@pytest.mark.usefixtures("empty_summary_store")
def test_from_summary_lists_the_stored_keys(demo, admin):
    nothing = invoke(["--object", "Enrollment", "--from-summary", "mismatched", "-u", admin])
    assert isinstance(nothing.exception, BadInput)
    assert "selective-sync summary --reverify" in str(nothing.exception)

    store_summary(admin)
    manifest = demo.manifest["Enrollment"]
    for kind in SummaryKind:
        done = invoke(
            [
                "--object",
                "Enrollment",
                "--from-summary",
                kind.value,
                "--json",
                "--limit",
                str(MAX_LIMIT),
                "-u",
                admin,
            ]
        )
        assert done.exit_code == 0, (done.output, done.exception)
        document = json.loads(done.stdout)
        assert document["ids"] == sorted(manifest[kind.value]), kind
        assert document["verified_at"] and document["from_summary"] == kind.value
        at_district = {r["at_district"] for r in document["records"]}
        assert at_district == ({False} if kind is SummaryKind.missing_at_district else {True})

    # Filters narrow the stored keys (by the district rows).
    end_years = {e[0]: e[4] for e in enrollments(demo)}
    narrowed = json.loads(
        invoke(
            [
                "--object",
                "Enrollment",
                "--from-summary",
                "missing_at_state",
                "--end-year",
                "2026",
                "--json",
                "-u",
                admin,
            ]
        ).stdout
    )
    expected = [k for k in sorted(manifest["missing_at_state"]) if end_years[k] == 2026]
    assert expected and narrowed["ids"] == expected[:100]

    table = invoke(["--object", "Enrollment", "--from-summary", "missing_at_district", "-u", admin])
    assert table.exit_code == 0
    assert "at the state only" in table.stdout
    header = next(line for line in table.stdout.splitlines() if "enrollmentID" in line)
    assert "school" not in header  # no district row: the IDs alone

    # The flow reads the same stored keys.
    from flows.find_ids import find_ids

    state = find_ids(
        requested_by=admin,
        object=FindObject.PersonIdentity,
        from_summary=SummaryKind.mismatched,
        limit=MAX_LIMIT,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert state.result().ids == sorted(demo.manifest["PersonIdentity"]["mismatched"])

    # The run form offers the key lists in plain words, and its words pick the same keys.
    from prefect.utilities.callables import parameter_schema

    from flows.find_ids import NO_SUMMARY

    choices = parameter_schema(find_ids).model_dump()["properties"]["from_summary"]["enum"]
    assert choices == [NO_SUMMARY, "Missing at state", "Mismatched", "Missing at district"]
    state = find_ids(
        requested_by=admin,
        object=FindObject.PersonIdentity,
        from_summary="Missing at district",
        limit=MAX_LIMIT,
        return_state=True,
    )
    assert state.is_completed(), state.message
    assert state.result().ids == sorted(demo.manifest["PersonIdentity"]["missing_at_district"])
    refused = find_ids(requested_by=admin, from_summary="missing", return_state=True)
    assert refused.is_failed() and "from_summary" in str(refused.message), refused.message


@pytest.mark.usefixtures("empty_summary_store")
def test_ids_only_round_trips_into_a_real_sync(demo, admin):
    """sync Enrollment "$(find --object Enrollment --from-summary mismatched --ids-only)"."""
    from selective_sync.db import make_engine
    from selective_sync.registry import get_object
    from selective_sync.verification.engine import verify_object

    store_summary(admin)
    found = invoke(
        ["--object", "Enrollment", "--from-summary", "mismatched", "--ids-only", "-u", admin]
    )
    assert found.exit_code == 0, found.output
    pasted = found.stdout.strip()
    ids = [int(x) for x in pasted.split(",")]
    assert ids == sorted(demo.manifest["Enrollment"]["mismatched"])

    from selective_sync.cli import app

    synced = CliRunner().invoke(app, ["sync", "Enrollment", pasted, "--user", admin, "--json"])
    assert synced.exit_code == 0, (synced.output, synced.exception)
    outcomes = {k["key"]: k["outcome"] for k in json.loads(synced.stdout)["keys"]}
    assert sorted(outcomes) == ids
    will_fail = {k for keys in demo.manifest["will_fail"]["Enrollment"].values() for k in keys}
    assert {k for k, o in outcomes.items() if o == "failed"} == set(ids) & will_fail
    assert {k for k, o in outcomes.items() if o == "synced"} == set(ids) - will_fail

    district, state = make_engine(demo.district_url), make_engine(demo.state_url)
    try:
        after = verify_object(district, state, get_object("Enrollment"), DISTRICT, ids)
    finally:
        district.dispose()
        state.dispose()
    assert set(after.mismatched) == set(ids) & will_fail


@pytest.mark.usefixtures("prefect_api")
def test_flow_writes_the_table_and_note_artifacts(demo, admin):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.find_ids import find_ids

    expected = {e[0] for e in enrollments(demo) if e[2] == 320}
    state = find_ids(
        requested_by=admin,
        object=FindObject.Enrollment,
        school="Summit",
        limit=4,
        return_state=True,
    )
    assert state.is_completed(), state.message
    result = state.result()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {f"find-ids-{DISTRICT}", f"find-ids-note-{DISTRICT}"}
    table = by_key[f"find-ids-{DISTRICT}"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [int(r["enrollmentID"]) for r in rows] == result.ids
    assert len(rows) == 4 and set(result.ids) <= expected
    assert {"enrollmentID", "personID", "school", "grade", "end year"} <= set(rows[0])
    note = by_key[f"find-ids-note-{DISTRICT}"].data
    assert f"{len(expected) - 4:,} more match" in note
    assert ",".join(map(str, result.ids)) in note

    refused = find_ids(requested_by="nobody", last_name="a", return_state=True)
    assert refused.is_failed() and "nobody" in refused.message


# ---------------------------------------------------------------- PostgreSQL and MariaDB


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_servers_give_the_same_answers_as_sqlite(kind, tmp_path):
    from dbservers import server_database
    from sqlalchemy import text

    from selective_sync.db import make_engine
    from selective_sync.demo import generate_demo
    from selective_sync.settings import sqlite_url

    queries = [
        dict(last="ÖZ"),
        dict(last="oz", first="JOSÉ"),
        dict(first="soren"),
        dict(last="m", end_year=2026),
        dict(object="Enrollment", last="özdemir"),
        dict(object="Enrollment", first="a", school="Summit"),
        dict(first="a", school="320"),
        dict(object="Enrollment", school="110", grade="kg"),
        dict(birth_date="2011-02-03"),
        dict(last="%"),
    ]
    answers, picked = {}, {}
    with server_database(kind) as url:
        for name, district_url in (("sqlite", None), (kind, url)):
            folder = tmp_path / name
            generate_demo(folder, persons=150, seed=5, district_url=district_url)
            engine = make_engine(district_url or sqlite_url(folder / "district.db"))
            try:
                with engine.begin() as conn:
                    ids = conn.execute(text("SELECT person_id FROM person ORDER BY person_id"))
                    picked[name] = [row[0] for row in ids][10:40:10]
                    names = (("Özdemir", "José"), ("OZDEMIR", "jose"), ("Bjørnsen", "Søren"))
                    for person, (last, first) in zip(picked[name], names, strict=True):
                        conn.execute(
                            text(
                                "UPDATE identity SET last_name = :last, first_name = :first, "
                                "birth_date = :born WHERE person_id = :person"
                            ),
                            {
                                "last": last,
                                "first": first,
                                "born": date(2011, 2, 3),
                                "person": person,
                            },
                        )
                answers[name] = [
                    find_records(engine, build_query(limit=MAX_LIMIT, **q), DISTRICT)
                    for q in queries
                ]
            finally:
                engine.dispose()
    for query, lite, server in zip(queries, answers["sqlite"], answers[kind], strict=True):
        assert server.records == lite.records, query
        assert server.total == lite.total, query
    assert picked[kind] == picked["sqlite"]
    a, b, c = picked[kind]
    assert {a, b} <= set(answers[kind][0].ids)
    assert set(answers[kind][1].ids) == {a, b}
    assert c in answers[kind][2].ids
    assert all(answers[kind][i].total > 0 for i in range(len(queries) - 1)), [
        r.total for r in answers[kind]
    ]
    assert answers[kind][-1].total == 0
