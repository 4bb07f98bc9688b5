"""The demo generator: deterministic, realistic, and its manifest is the exact truth."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Date, Integer

from selective_sync.demo import OTHER_DISTRICT, DemoManifest, generate_demo
from selective_sync.demo import generator as demo_generator
from selective_sync.errors import BadInput, DatabaseUnavailable, DataDirError
from selective_sync.models import ISSUE_KINDS
from selective_sync.registry import REGISTRY
from selective_sync.schema import CODE_TABLES, district_metadata, state_metadata
from selective_sync.settings import sqlite_url

PERSONS = 300
SEED = 11
DISTRICT = 275


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, DemoManifest]:
    directory = tmp_path_factory.mktemp("demo")
    return directory, generate_demo(directory, persons=PERSONS, seed=SEED)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def checksums(path: Path) -> dict[str, str]:
    """A digest of every table's rows, in key order."""
    with connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for table in sorted(tables):
            digest = hashlib.sha256()
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
            out[table] = digest.hexdigest()
    return out


# ---------------------------------------------------------------- a naive verifier


def _normalise(value, how: str):
    # The registry's rules: trimmed strings, dates as calendar dates, NULL stays NULL.
    if value is None:
        return None
    if how == "trim":
        return str(value).strip(" \t\r\n")
    if how == "date":
        return date.fromisoformat(str(value).strip()[:10])
    if how == "int":
        return int(value)
    return value


def _rows(conn, object_name: str, side: str) -> dict[int, tuple]:
    """Every key of the object at one side, with its normalised compared values."""
    spec = REGISTRY[object_name]
    prefix = "state_" if side == "state" else ""
    where = f"WHERE r.district_number = {DISTRICT}" if side == "state" else ""
    joins, aliases = [], {spec.root: "r"}
    for n, join in enumerate(spec.joins):
        alias = f"j{n}"
        aliases[join.table] = alias
        extra = f" AND {alias}.district_number = r.district_number" if side == "state" else ""
        joins.append(
            f"LEFT JOIN {prefix}{join.table} {alias} "
            f"ON {alias}.{join.id_column} = r.{join.root_column}{extra}"
        )
    columns = ", ".join(f"{aliases[c.table]}.{c.column}" for c in spec.compared)
    sql = (
        f"SELECT r.{spec.key_column}, {columns} FROM {prefix}{spec.root} r "
        + " ".join(joins)
        + f" {where}"
    )
    rows = {
        row[0]: tuple(
            _normalise(v, c.normalise) for v, c in zip(row[1:], spec.compared, strict=True)
        )
        for row in conn.execute(sql)
    }
    # The whole object: every row of each child part (a person's identity history), all
    # the columns the sync copies, normalised as declared or by their type.
    declared = {(c.table, c.column): c.normalise for c in spec.compared}
    for part in spec.parts:
        if part.table == spec.root:
            continue
        table = district_metadata.tables[part.table]
        names = [c.name for c in table.columns]
        how = [
            declared.get((part.table, c.name))
            or (
                "date"
                if isinstance(c.type, Date)
                else "int"
                if isinstance(c.type, Integer)
                else "exact"
            )
            for c in table.columns
        ]
        children: dict[int, list] = {}
        where = f"WHERE district_number = {DISTRICT}" if side == "state" else ""
        for row in conn.execute(f"SELECT {', '.join(names)} FROM {prefix}{part.table} {where}"):
            values = tuple(_normalise(v, h) for v, h in zip(row, how, strict=True))
            children.setdefault(row[names.index(part.link)], []).append(values)
        for key in rows:
            rows[key] += (tuple(sorted(children.get(key, []))),)
    return rows


def naive_verify(directory: Path, object_name: str) -> dict[str, list[int]]:
    with connect(directory / "district.db") as d, connect(directory / "state.db") as s:
        at_district, at_state = _rows(d, object_name, "district"), _rows(s, object_name, "state")
    return {
        "missing_at_state": sorted(at_district.keys() - at_state.keys()),
        "missing_at_district": sorted(at_state.keys() - at_district.keys()),
        "mismatched": sorted(
            k for k in at_district.keys() & at_state.keys() if at_district[k] != at_state[k]
        ),
    }


# ---------------------------------------------------------------- manifest


def test_manifest_shape_and_counts(demo):
    directory, manifest = demo
    data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    assert data["district"] == {"number": DISTRICT, "name": "MAPLE VALLEY"}
    assert (data["persons"], data["seed"]) == (PERSONS, SEED)
    assert set(data) == {"district", "persons", "seed", "will_fail", *REGISTRY}
    for name in REGISTRY:
        assert set(data[name]) == set(ISSUE_KINDS)
        for kind in ISSUE_KINDS:
            keys = data[name][kind]
            assert keys == sorted(keys) and len(keys) >= 3, (name, kind)
        reasons = data["will_fail"][name]
        assert set(reasons) == {"parent_missing", "unmapped_code"}
        assert len(reasons["unmapped_code"]) >= 3
        if name == "PersonIdentity":
            assert reasons["parent_missing"] == []
        else:
            assert len(reasons["parent_missing"]) >= 3
    assert DemoManifest.load(directory / "manifest.json").to_json() == manifest.to_json()
    assert manifest.discrepancy_counts()["Enrollment"]["mismatched"] == len(
        data["Enrollment"]["mismatched"]
    )


@pytest.mark.parametrize("object_name", list(REGISTRY))
def test_manifest_is_the_exact_truth(demo, object_name):
    directory, manifest = demo
    found = naive_verify(directory, object_name)
    for kind in ISSUE_KINDS:
        assert found[kind] == manifest.keys(object_name, kind), kind


def test_kinds_are_disjoint_and_will_fail_keys_are_at_the_district(demo):
    _directory, manifest = demo
    for name in REGISTRY:
        kinds = [set(manifest.keys(name, kind)) for kind in ISSUE_KINDS]
        assert sum(map(len, kinds)) == len(set().union(*kinds)), name
        missing, _gone, mismatched = kinds
        parent_missing = set(manifest.failing(name, "parent_missing"))
        unmapped = set(manifest.failing(name, "unmapped_code"))
        assert parent_missing <= missing
        assert unmapped <= missing | mismatched
        assert not parent_missing & unmapped
    # A person missing at the state takes its enrollments and graduations with it.
    assert manifest.failing("Enrollment", "parent_missing")
    assert manifest.issue_of("Enrollment", manifest.failing("Enrollment", "parent_missing")[0])


# ---------------------------------------------------------------- the state refuses will_fail


def _sync_rows(d: sqlite3.Connection, object_name: str, key: int) -> list[tuple[str, dict]]:
    """The district rows a sync of ``key`` sends, as (state table, row) parents first."""
    spec = REGISTRY[object_name]
    d.row_factory = sqlite3.Row
    out = []
    for part in spec.parts:
        rows = d.execute(f"SELECT * FROM {part.table} WHERE {part.link} = ?", (key,))
        out += [("state_" + part.table, dict(row)) for row in rows]
    return out


def _upsert(s: sqlite3.Connection, table: str, row: dict) -> None:
    key = [c.name for c in state_metadata.tables[table].primary_key.columns]
    columns = ["district_number", *row]
    updates = ", ".join(f"{c} = excluded.{c}" for c in row if c not in key)
    s.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}",
        (DISTRICT, *row.values()),
    )


def test_state_refuses_exactly_the_will_fail_keys(demo):
    """Send every differing district record to the state: only will_fail ones are refused."""
    directory, manifest = demo
    with connect(directory / "district.db") as d, connect(directory / "state.db") as s:
        s.isolation_level = None  # savepoints under our control
        for name in REGISTRY:
            failing = set(manifest.failing(name, "parent_missing")) | set(
                manifest.failing(name, "unmapped_code")
            )
            for key in manifest.keys(name, "missing_at_state") + manifest.keys(name, "mismatched"):
                s.execute("SAVEPOINT attempt")
                try:
                    for table, row in _sync_rows(d, name, key):
                        _upsert(s, table, row)
                except sqlite3.IntegrityError:
                    refused = True
                else:
                    refused = False
                s.execute("ROLLBACK TO attempt")
                s.execute("RELEASE attempt")
                assert refused == (key in failing), (name, key)


def test_state_integrity_and_code_tables(demo):
    directory, _manifest = demo
    with connect(directory / "state.db") as s:
        assert s.execute("PRAGMA foreign_key_check").fetchall() == []
        for table in state_metadata.tables.values():
            for column in table.columns:
                for fk in column.foreign_keys:
                    if fk.column.table.name not in CODE_TABLES:
                        continue
                    codes = {c for c, _ in CODE_TABLES[fk.column.table.name]}
                    used = {
                        v for (v,) in s.execute(f"SELECT DISTINCT {column.name} FROM {table.name}")
                    }
                    assert used - {None} <= codes, (table.name, column.name)


# ---------------------------------------------------------------- realism and the other district


def test_other_district_shares_id_numbers(demo):
    directory, manifest = demo
    number, name = OTHER_DISTRICT
    with connect(directory / "state.db") as s, connect(directory / "district.db") as d:
        districts = dict(s.execute("SELECT district_number, name FROM state_district"))
        assert districts == {DISTRICT: "MAPLE VALLEY", number: name}
        other = {
            p
            for (p,) in s.execute(
                f"SELECT person_id FROM state_person WHERE district_number = {number}"
            )
        }
        ours = {p for (p,) in d.execute("SELECT person_id FROM person")}
        other_enrollments = {
            e
            for (e,) in s.execute(
                f"SELECT enrollment_id FROM state_enrollment WHERE district_number = {number}"
            )
        }
        ours_enrollments = {e for (e,) in d.execute("SELECT enrollment_id FROM enrollment")}
    assert len(other) >= 50 and len(other & ours) >= 40
    assert other_enrollments & ours_enrollments
    # Keys missing at the state for our district exist there for the other district.
    assert set(manifest.keys("PersonIdentity", "missing_at_state")) & other


def test_realistic_rows(demo):
    directory, _manifest = demo
    with connect(directory / "district.db") as d:
        people = [p for (p,) in d.execute("SELECT person_id FROM person ORDER BY 1")]
        assert people[0] >= 10_000 and people[-1] - people[0] + 1 > len(people)  # gaps
        names = [r for r in d.execute("SELECT first_name, last_name, middle_name FROM identity")]
        text = " ".join(f"{f} {last}" for f, last, _m in names)
        assert any(c in text for c in "éëñóáíúøç"), "accented names"
        assert "'" in text and "-" in text
        assert {m for *_x, m in names} >= {None}
        per_person = dict(
            d.execute("SELECT person_id, count(*) FROM identity GROUP BY person_id").fetchall()
        )
        assert set(per_person.values()) == {1, 2}
        enrollments = d.execute(
            "SELECT e.person_id, e.end_year, e.grade, i.birth_date, e.start_date, e.end_date "
            "FROM enrollment e JOIN person p ON p.person_id = e.person_id "
            "JOIN identity i ON i.identity_id = p.current_identity_id"
        ).fetchall()
        counts: dict[int, int] = {}
        for pid, end_year, grade, birth, start, end in enrollments:
            counts[pid] = counts.get(pid, 0) + 1
            level = int(grade) if grade.isdigit() else {"PK": -1, "KG": 0}.get(grade)
            if level is not None:  # X9 is the seeded unmapped grade
                born = date.fromisoformat(birth)
                age = end_year - 1 - born.year - ((born.month, born.day) > (9, 1))
                # Kindergarten at 5 on September 1; a few were held back a year.
                assert age - level in (5, 6), (pid, grade, birth)
            assert end is None or start < end
        assert set(counts.values()) <= {1, 2, 3} and len(set(counts.values())) == 3
        genders = {g for (g,) in d.execute("SELECT DISTINCT gender FROM identity")}
        assert genders == {"M", "F", "N", "U"}
        races = {r for (r,) in d.execute("SELECT DISTINCT race_ethnicity FROM identity")}
        assert races <= {str(n) for n in range(1, 8)} and len(races) >= 5
        state_ids = [s for (s,) in d.execute("SELECT state_id FROM person") if s]
        assert all(len(s.strip()) == 10 and s.strip().isdigit() for s in state_ids)
        assert d.execute("SELECT count(*) FROM school").fetchone()[0] == 8
        graduated = d.execute(
            "SELECT count(*) FROM graduation g JOIN enrollment e ON e.person_id = g.person_id "
            "AND e.grade = '12' AND e.end_status = 'G1'"
        ).fetchone()[0]
        assert graduated >= d.execute("SELECT count(*) FROM graduation").fetchone()[0] - 3


def test_noise_is_present_but_not_a_discrepancy(demo):
    directory, manifest = demo
    listed = {name: set(manifest.error_keys(name)) for name in REGISTRY}
    with connect(directory / "state.db") as s, connect(directory / "district.db") as d:
        datetime_people = {
            p
            for (p,) in s.execute(
                "SELECT person_id FROM state_identity WHERE district_number = ? "
                "AND birth_date LIKE '% 00:00:00'",
                (DISTRICT,),
            )
        }
        datetime_enrollments = {
            e
            for (e,) in s.execute(
                "SELECT enrollment_id FROM state_enrollment WHERE district_number = ? "
                "AND start_date LIKE '% 00:00:00'",
                (DISTRICT,),
            )
        }
        spaced_state = {
            p
            for (p,) in s.execute(
                "SELECT person_id FROM state_identity WHERE district_number = ? "
                "AND (last_name != trim(last_name) OR first_name != trim(first_name))",
                (DISTRICT,),
            )
        }
        spaced_district = {
            p
            for (p,) in d.execute(
                "SELECT person_id FROM identity WHERE first_name != trim(first_name)"
            )
        }
        null_both = s.execute(
            "SELECT count(*) FROM state_identity WHERE district_number = ? AND middle_name IS NULL",
            (DISTRICT,),
        ).fetchone()[0]
    assert datetime_people and datetime_enrollments and spaced_state and spaced_district
    assert null_both > 0
    assert not datetime_people & listed["PersonIdentity"]
    assert not datetime_enrollments & listed["Enrollment"]
    assert not (spaced_state | spaced_district) & listed["PersonIdentity"]


# ---------------------------------------------------------------- determinism


def test_same_seed_same_demo_and_other_seed_differs(demo, tmp_path):
    directory, manifest = demo
    again = generate_demo(tmp_path / "again", persons=PERSONS, seed=SEED)
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (
        directory / "manifest.json"
    ).read_bytes()
    assert again == manifest
    for name in ("district.db", "state.db"):
        assert checksums(tmp_path / "again" / name) == checksums(directory / name)

    other = generate_demo(tmp_path / "other", persons=PERSONS, seed=SEED + 1)
    assert other.to_json() != manifest.to_json()
    assert checksums(tmp_path / "other" / "district.db") != checksums(directory / "district.db")


def test_generic_path_and_urls_write_the_same_rows(demo, tmp_path, monkeypatch):
    """The Core path (PostgreSQL, MariaDB) on SQLite URLs writes what the fast path writes."""
    directory, manifest = demo
    monkeypatch.setattr(demo_generator, "RAW_SQLITE", False)
    urls = {
        "district_url": sqlite_url(tmp_path / "d.sqlite"),
        "state_url": sqlite_url(tmp_path / "s.sqlite"),
    }
    for _ in range(2):  # running again replaces the earlier demo rows
        result = generate_demo(tmp_path / "m", persons=PERSONS, seed=SEED, **urls)
    assert result.to_json() == manifest.to_json()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json"]
    assert checksums(tmp_path / "d.sqlite") == checksums(directory / "district.db")
    assert checksums(tmp_path / "s.sqlite") == checksums(directory / "state.db")


def test_small_and_tiny_demos(tmp_path):
    manifest = generate_demo(tmp_path / "200", persons=200, seed=1)
    for name in REGISTRY:
        for kind in ISSUE_KINDS:
            assert len(manifest.keys(name, kind)) >= 3, (name, kind)
    for kind in ISSUE_KINDS:
        assert naive_verify(tmp_path / "200", "Enrollment")[kind] == manifest.keys(
            "Enrollment", kind
        )
    tiny = generate_demo(tmp_path / "1", persons=1, seed=1)
    assert sum(sum(k.values()) for k in tiny.discrepancy_counts().values()) == 0
    with connect(tmp_path / "1" / "district.db") as d:
        assert d.execute("SELECT count(*) FROM person").fetchone()[0] == 1


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"persons": 0}, "persons must be"),
        ({"persons": -5}, "persons must be"),
        ({"persons": "many"}, "persons must be"),
        ({"seed": 1.5}, "seed must be"),
        ({"district_number": OTHER_DISTRICT[0]}, "taken by the demo's other district"),
        ({"district_name": "  "}, "district name"),
        ({"district_url": "not a url"}, "not a database URL"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, kwargs, message):
    target = tmp_path / "new" / "demo"
    with pytest.raises(BadInput, match=message) as info:
        generate_demo(target, **{"persons": 10, **kwargs})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "new").exists()


def test_directory_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirError, match="a-file") as info:
        generate_demo(blocker / "demo", persons=10)
    assert "\n" not in str(info.value)
    with pytest.raises(DataDirError, match="not a directory"):
        generate_demo(blocker, persons=10)
    assert blocker.read_text() == "not a directory"


def test_failure_keeps_the_previous_demo(tmp_path):
    generate_demo(tmp_path, persons=60, seed=3)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        generate_demo(
            tmp_path, persons=60, seed=4, state_url="postgresql+psycopg://nobody@127.0.0.1:1/x"
        )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_district_metadata_is_complete(demo):
    """Every district table is filled, so the demo exercises every part of the registry."""
    directory, _manifest = demo
    with connect(directory / "district.db") as d:
        for table in district_metadata.tables:
            assert d.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table


def test_the_second_district_has_its_own_database_with_seeded_drift(tmp_path):
    """``other_district_db``: district 312's database holds the rows the state has for 312,
    but for the persons the manifest lists as renamed since; the demo itself is unchanged."""
    from sqlalchemy import create_engine

    from selective_sync.demo import OTHER_DISTRICT_FILE, demo_districts
    from selective_sync.verification.engine import verify_object

    plain = tmp_path / "plain"
    generate_demo(plain, persons=PERSONS, seed=SEED)
    with pytest.raises(BadInput, match="--second-district"):
        demo_districts(plain)
    directory = tmp_path / "two"
    manifest = generate_demo(directory, persons=PERSONS, seed=SEED, other_district_db=True)
    for name in ("district.db", "state.db"):
        assert checksums(directory / name) == checksums(plain / name)
    number, name = OTHER_DISTRICT
    renamed = manifest.other_district["PersonIdentity"]["mismatched"]
    assert manifest.other_district["number"] == number and len(renamed) == 3
    assert DemoManifest.load(directory / "manifest.json").other_district == manifest.other_district
    (configured,) = demo_districts(directory)
    assert configured == {
        "number": number,
        "name": name,
        "url": sqlite_url(directory / OTHER_DISTRICT_FILE),
    }
    district = create_engine(configured["url"])
    state = create_engine(sqlite_url(directory / "state.db"))
    try:
        for spec in REGISTRY.values():
            result = verify_object(district, state, spec, number)
            assert result.at_district == result.at_state > 0, spec.name
            expected = renamed if spec.name == "PersonIdentity" else []
            assert (result.missing_at_state, result.missing_at_district) == ([], [])
            assert result.mismatched == expected, spec.name
    finally:
        district.dispose()
        state.dispose()
