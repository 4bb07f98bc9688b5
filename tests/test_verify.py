"""The streaming verification engine, on real SQLite files (district and state are separate
engines, as in production)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from selective_sync.db import make_engine
from selective_sync.errors import BadInput, DatabaseUnavailable, SchemaMissing
from selective_sync.initdb import create_district_schema, create_state_schema
from selective_sync.models import ISSUE_KINDS, ColumnDiff, accuracy
from selective_sync.registry import REGISTRY, get_object
from selective_sync.settings import DEMO_DISTRICT_NUMBER, sqlite_url
from selective_sync.verification.digest import MARK, NULL, PART_END, VALUE_END, encode
from selective_sync.verification.engine import (
    _Collector,
    _merge,
    _Prefetch,
    _side_chunks,
    fetch_compared_rows,
    verify_district,
    verify_object,
)

DISTRICT = DEMO_DISTRICT_NUMBER
OTHER = 301
PERSON = get_object("PersonIdentity")
ENROLLMENT = get_object("Enrollment")


# ------------------------------------------------------------------ fixtures


def insert(engine, table: str, rows: list[dict]) -> None:
    """Insert raw values (bypassing SQLAlchemy types, so text dates are stored as given)."""
    if not rows:
        return
    columns = list(rows[0])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, rows)


class Dbs:
    """A district SQLite file and a state SQLite file holding this district and another."""

    def __init__(self, directory: Path) -> None:
        self.district = make_engine(sqlite_url(directory / "district.db"), must_exist=False)
        self.state = make_engine(sqlite_url(directory / "state.db"), must_exist=False)
        create_district_schema(self.district)
        create_state_schema(self.state, {DISTRICT: "MAPLE VALLEY", OTHER: "OTHER"})

    def add_person(self, side: str, pid: int, district: int = DISTRICT, **identity) -> None:
        """A person and its current identity (identity_id = 10 * pid) on one side."""
        self.add_people(side, {pid: identity}, district)

    def add_people(self, side: str, people: dict[int, dict], district: int = DISTRICT) -> None:
        """Several persons at once: {person_id: identity fields overriding the defaults}."""
        persons, identities = [], []
        for pid, fields in people.items():
            fields = dict(fields)
            persons.append(
                {
                    "person_id": pid,
                    "state_id": fields.pop("state_id", f"S{pid:06d}"),
                    "current_identity_id": fields.pop("identity_id", pid * 10),
                }
            )
            identities.append(
                {
                    "identity_id": persons[-1]["current_identity_id"],
                    "person_id": pid,
                    "last_name": "Smith",
                    "first_name": "Ann",
                    "middle_name": None,
                    "suffix": None,
                    "birth_date": "2010-05-01",
                    "gender": "F",
                    "race_ethnicity": "6",
                }
                | fields
            )
        if side == "district":
            assert district == DISTRICT
            insert(self.district, "person", persons)
            insert(self.district, "identity", identities)
        else:
            tag = {"district_number": district}
            insert(self.state, "state_person", [row | tag for row in persons])
            insert(self.state, "state_identity", [row | tag for row in identities])

    def add_both(self, pid: int, district_identity=None, state_identity=None, **identity):
        self.add_person("district", pid, **(identity | (district_identity or {})))
        self.add_person("state", pid, **(identity | (state_identity or {})))

    def verify(self, spec=PERSON, **kwargs):
        return verify_object(self.district, self.state, spec, DISTRICT, **kwargs)


@pytest.fixture
def dbs(tmp_path: Path) -> Dbs:
    return Dbs(tmp_path)


def key_sets(result) -> tuple[list[int], list[int], list[int]]:
    return result.missing_at_state, result.missing_at_district, result.mismatched


# ------------------------------------------------------------------ normalisation cases


def test_null_versus_empty_string_is_a_mismatch(dbs: Dbs) -> None:
    dbs.add_both(1, district_identity={"middle_name": None}, state_identity={"middle_name": ""})
    result = dbs.verify()
    assert key_sets(result) == ([], [], [1])
    (issue,) = result.issues
    assert issue.issue == "mismatched"
    assert issue.diffs == (ColumnDiff("middle_name", None, ""),)


def test_null_equals_null(dbs: Dbs) -> None:
    dbs.add_both(1, middle_name=None, suffix=None, birth_date=None)
    assert key_sets(dbs.verify()) == ([], [], [])


def test_surrounding_spaces_are_not_a_mismatch(dbs: Dbs) -> None:
    dbs.add_both(
        1, district_identity={"last_name": "Smith  "}, state_identity={"last_name": "Smith"}
    )
    dbs.add_both(2, district_identity={"first_name": " Ann"}, state_identity={"first_name": "Ann "})
    assert key_sets(dbs.verify()) == ([], [], [])


def test_space_only_string_equals_empty_string_not_null(dbs: Dbs) -> None:
    dbs.add_both(1, district_identity={"suffix": "  "}, state_identity={"suffix": ""})
    dbs.add_both(2, district_identity={"suffix": "  "}, state_identity={"suffix": None})
    assert key_sets(dbs.verify()) == ([], [], [2])


def test_datetime_text_equals_date_text_in_sqlite(dbs: Dbs) -> None:
    dbs.add_both(
        1,
        district_identity={"birth_date": "2010-05-01 00:00:00"},
        state_identity={"birth_date": "2010-05-01"},
    )
    dbs.add_both(
        2,
        district_identity={"birth_date": "2010-05-02"},
        state_identity={"birth_date": "2010-05-01"},
    )
    result = dbs.verify()
    assert key_sets(result) == ([], [], [2])
    assert result.issues[0].diffs == (ColumnDiff("birth_date", "2010-05-02", "2010-05-01"),)


def test_unparseable_date_text_differs_from_null(dbs: Dbs) -> None:
    dbs.add_both(
        1, district_identity={"birth_date": "not a date"}, state_identity={"birth_date": None}
    )
    assert key_sets(dbs.verify()) == ([], [], [1])


def test_several_differing_columns_are_all_listed(dbs: Dbs) -> None:
    dbs.add_both(
        7,
        district_identity={"last_name": "Smith", "gender": "F", "state_id": "S1"},
        state_identity={"last_name": "Smyth", "gender": "M", "state_id": "S2"},
    )
    (issue,) = dbs.verify().issues
    assert issue.diffs == (
        ColumnDiff("state_id", "S1", "S2"),
        ColumnDiff("last_name", "Smith", "Smyth"),
        ColumnDiff("gender", "F", "M"),
    )


SEP = MARK
NULL_MARK = "\x1e"  # the NULL mark of the packed rows before digests: now just a value


def test_value_holding_the_separator_still_gets_its_column_diffs(dbs: Dbs) -> None:
    dbs.add_both(
        1, district_identity={"last_name": f"Sm{SEP}ith"}, state_identity={"last_name": "Smith"}
    )
    (issue,) = dbs.verify().issues
    assert issue.diffs == (ColumnDiff("last_name", f"Sm{SEP}ith", "Smith"),)


def test_canonical_tokens() -> None:
    """The reference encoder: NULL, '', ints, the mark doubled inside a value."""
    assert encode([12, "RG", None, 2025], ["int", "trim", "date", "int"]) == (
        f"12{VALUE_END}RG{VALUE_END}{NULL}2025{VALUE_END}"
    )
    assert encode(["", None], ["trim", "trim"]) == f"{VALUE_END}{NULL}"
    assert encode([f"a{MARK}b"], ["exact"]) == f"a{MARK}{MARK}b{MARK};"
    # Values holding the mark never shift into a neighbour or pass for NULL or a part end.
    texts = {
        encode(values, ["exact"] * 2)
        for values in (
            (f"A{MARK}B", "C"),
            ("A", f"B{MARK}C"),
            (f"A{MARK};", "C"),
            (NULL, ""),
            (None, ""),
            ("N", None),
            (PART_END, None),
            (f"{MARK}", ";"),
        )
    }
    assert len(texts) == 8


def packed_texts(dbs: Dbs, key: int) -> tuple[str, str]:
    """The canonical text of one key on each side, as the full scan reads it (SQLite)."""
    texts = []
    for engine, side in ((dbs.district, "district"), (dbs.state, "state")):
        rows = [
            row
            for chunk in _side_chunks(engine, PERSON, side, DISTRICT, None, 100)
            for row in chunk
        ]
        texts.append(dict(rows)[key])
    return texts[0], texts[1]


# (district identity fields, state identity fields, the column diffs): different records
# whose packed texts were equal before the canonical text escaped the separators.
COLLISIONS = {
    "exactly U+001E vs NULL": (
        {"middle_name": NULL_MARK},
        {"middle_name": None},
        (ColumnDiff("middle_name", NULL_MARK, None),),
    ),
    "U+001F shifted to the next value": (
        {"last_name": f"A{SEP}B", "first_name": "C"},
        {"last_name": "A", "first_name": f"B{SEP}C"},
        (ColumnDiff("last_name", f"A{SEP}B", "A"), ColumnDiff("first_name", "C", f"B{SEP}C")),
    ),
    "U+001E then '' vs NULL then U+001F": (
        {"middle_name": NULL_MARK, "suffix": ""},
        {"middle_name": None, "suffix": SEP},
        (ColumnDiff("middle_name", NULL_MARK, None), ColumnDiff("suffix", "", SEP)),
    ),
}


@pytest.mark.parametrize("swapped", [False, True], ids=["as listed", "sides swapped"])
@pytest.mark.parametrize("case", list(COLLISIONS))
def test_records_whose_packed_texts_collide_are_mismatched(
    dbs: Dbs, case: str, swapped: bool
) -> None:
    d_fields, s_fields, diffs = COLLISIONS[case]
    if swapped:  # the state's row is the unclean one (or both are)
        d_fields, s_fields = s_fields, d_fields
        diffs = tuple(ColumnDiff(d.column, d.state, d.district) for d in diffs)
    for pid in range(1, 41):  # clean equal neighbours in the same windows
        dbs.add_both(pid)
    dbs.add_both(41, district_identity=d_fields, state_identity=s_fields)
    for pid in range(42, 81):
        dbs.add_both(pid)
    d_text, s_text = packed_texts(dbs, 41)
    assert d_text != s_text  # the escaping tells them apart
    for chunk_rows in (1, 7, 20_000):
        for keys in (None, [41], [3, 41, 77]):
            result = dbs.verify(keys=keys, chunk_rows=chunk_rows)
            assert key_sets(result) == ([], [], [41]), (chunk_rows, keys)
            assert [(i.key, i.issue, i.diffs) for i in result.issues] == [(41, "mismatched", diffs)]
            assert result.at_district == result.at_state == (80 if keys is None else len(keys))
    bare = dbs.verify(with_diffs=False)
    assert key_sets(bare) == ([], [], [41])
    assert bare.issues[0].diffs == ()


def test_collision_in_the_verification_summary(dbs: Dbs) -> None:
    for pid, (d_fields, s_fields, _) in enumerate(COLLISIONS.values(), start=1):
        dbs.add_both(pid, district_identity=d_fields, state_identity=s_fields)
    summary = verify_district(dbs.district, dbs.state, DISTRICT, "MAPLE VALLEY")
    person = summary.objects[0]
    assert key_sets(person) == ([], [], [1, 2, 3])
    assert [i.diffs for i in person.issues] == [diffs for _, _, diffs in COLLISIONS.values()]


def test_equal_values_holding_the_marks_are_in_sync(dbs: Dbs) -> None:
    """Equal values holding the marks have equal canonical texts: not reported."""
    equal_unclean = {
        2: {"last_name": f"Sm{NULL_MARK}ith"},  # U+001E inside a value
        3: {"middle_name": NULL_MARK},  # exactly U+001E on both sides
        4: {"last_name": f"A{SEP}B", "first_name": f"{SEP}C{SEP}", "suffix": SEP},
        5: {"state_id": f"{SEP}{NULL_MARK}", "middle_name": None, "suffix": ""},
    }
    dbs.add_both(1)
    for pid, fields in equal_unclean.items():
        dbs.add_both(pid, **fields)
    # Among them: a real difference on an unclean row, NULL vs '', a missing key.
    dbs.add_both(
        6, last_name=f"X{SEP}", district_identity={"gender": "M"}, state_identity={"gender": "F"}
    )
    dbs.add_both(7, district_identity={"middle_name": None}, state_identity={"middle_name": ""})
    dbs.add_person("district", 8, last_name=f"Sm{SEP}ith")
    dbs.add_both(9, suffix=f"Jr{NULL_MARK}")
    for chunk_rows in (1, 2, 20_000):
        for keys in (None, range(1, 10)):
            result = dbs.verify(keys=keys, chunk_rows=chunk_rows)
            assert key_sets(result) == ([8], [], [6, 7]), (chunk_rows, keys)
            assert [(i.key, i.issue, i.diffs) for i in result.issues] == [
                (6, "mismatched", (ColumnDiff("gender", "M", "F"),)),
                (7, "mismatched", (ColumnDiff("middle_name", None, ""),)),
                (8, "missing_at_state", ()),
            ]
            assert (result.at_district, result.at_state, result.errors) == (9, 8, 3)
    assert key_sets(dbs.verify(with_diffs=False)) == ([8], [], [6, 7])


def test_current_identity_is_what_is_compared(dbs: Dbs) -> None:
    """A new current identity at the district (name change) is a mismatch, and the new
    identity row missing at the state shows in the identity history."""
    dbs.add_both(1)
    # The district moved person 1 to a new identity row; the state still points at the old.
    insert(
        dbs.district,
        "identity",
        [
            {
                "identity_id": 11,
                "person_id": 1,
                "last_name": "Jones",
                "first_name": "Ann",
                "birth_date": "2010-05-01",
                "gender": "F",
                "race_ethnicity": "6",
            }
        ],
    )
    with dbs.district.begin() as conn:
        conn.exec_driver_sql("UPDATE person SET current_identity_id = 11 WHERE person_id = 1")
    (issue,) = dbs.verify().issues
    assert issue.key == 1
    assert issue.diffs == (
        ColumnDiff("current_identity_id", 11, 10),
        ColumnDiff("last_name", "Jones", "Smith"),
        ColumnDiff("identity history", "identity 11", "no identity 11"),
    )


def old_identity(pid: int, identity_id: int, **fields) -> dict:
    """An earlier identity row of person ``pid`` (not its current one)."""
    return {
        "identity_id": identity_id,
        "person_id": pid,
        "last_name": "Brown",
        "first_name": "Ann",
        "middle_name": None,
        "suffix": None,
        "birth_date": "2010-05-01",
        "gender": "F",
        "race_ethnicity": "6",
        "effective_date": "2015-09-01",
    } | fields


def add_history(dbs: Dbs, side: str, rows: list[dict]) -> None:
    if side == "district":
        insert(dbs.district, "identity", rows)
    else:
        insert(dbs.state, "state_identity", [r | {"district_number": DISTRICT} for r in rows])


def test_identity_history_drift_is_a_mismatch(dbs: Dbs) -> None:
    """Every identity row of a person is verified, not only the current one."""
    for pid in range(1, 8):
        dbs.add_both(pid)
    # 1: an old identity deleted at the state; 2: one the district never had.
    add_history(dbs, "district", [old_identity(1, 5)])
    add_history(dbs, "state", [old_identity(2, 6)])
    # 3: an old identity differs; 4: it differs only in white space (equal).
    add_history(dbs, "district", [old_identity(3, 7), old_identity(4, 8, last_name="Brown")])
    add_history(
        dbs, "state", [old_identity(3, 7, last_name="Browne", middle_name=""),
                       old_identity(4, 8, last_name=" Brown\t")]
    )  # fmt: skip
    # 5: the current identity differs in a column the compared row leaves out.
    with dbs.state.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE state_identity SET effective_date = '2020-01-01' WHERE identity_id = 50"
        )
    # 6: equal histories written in another order at the state.
    add_history(dbs, "district", [old_identity(6, 1), old_identity(6, 2, last_name="Gray")])
    add_history(dbs, "state", [old_identity(6, 2, last_name="Gray"), old_identity(6, 1)])
    for chunk_rows in (1, 3, 20_000):
        for keys in (None, [1, 2, 3, 4, 5, 6, 7]):
            result = dbs.verify(keys=keys, chunk_rows=chunk_rows)
            assert key_sets(result) == ([], [], [1, 2, 3, 5]), (chunk_rows, keys)
            history = "identity history"
            assert [(i.key, i.diffs) for i in result.issues] == [
                (1, (ColumnDiff(history, "identity 5", "no identity 5"),)),
                (2, (ColumnDiff(history, "no identity 6", "identity 6"),)),
                (
                    3,
                    (
                        ColumnDiff(
                            history,
                            "identity 7: last_name='Brown', middle_name=NULL",
                            "identity 7: last_name='Browne', middle_name=''",
                        ),
                    ),
                ),
                (
                    5,
                    (
                        ColumnDiff(
                            history,
                            "identity 50: effective_date=NULL",
                            "identity 50: effective_date='2020-01-01'",
                        ),
                    ),
                ),
            ]
    assert key_sets(dbs.verify(with_diffs=False)) == ([], [], [1, 2, 3, 5])


# ------------------------------------------------------------------ sets, districts, keys


def test_missing_on_either_side_and_counts(dbs: Dbs) -> None:
    dbs.add_both(1)
    dbs.add_both(2)
    dbs.add_person("district", 3)
    dbs.add_person("state", 4)
    result = dbs.verify()
    assert key_sets(result) == ([3], [4], [])
    assert (result.at_district, result.at_state, result.distinct, result.errors) == (3, 3, 4, 2)
    assert result.accuracy == 50.0
    assert [(i.key, i.issue, i.diffs) for i in result.issues] == [
        (3, "missing_at_state", ()),
        (4, "missing_at_district", ()),
    ]


def test_other_districts_rows_are_never_reported(dbs: Dbs) -> None:
    dbs.add_both(1)
    dbs.add_person("district", 2)
    # Another district holds the same person IDs with other data, and one ID we lack.
    dbs.add_person("state", 1, district=OTHER, last_name="Other")
    dbs.add_person("state", 2, district=OTHER)
    dbs.add_person("state", 99, district=OTHER)
    result = dbs.verify()
    assert key_sets(result) == ([2], [], [])
    assert (result.at_district, result.at_state) == (2, 1)
    # Nor with keys, nor through the single-key helper.
    assert key_sets(dbs.verify(keys=[1, 2, 99])) == ([2], [], [])
    assert fetch_compared_rows(dbs.state, PERSON, "state", DISTRICT, [1, 2, 99]).keys() == {1}


def test_other_districts_identity_is_never_joined(dbs: Dbs) -> None:
    """The state's person→identity join matches the district number too."""
    dbs.add_person("district", 1)
    insert(
        dbs.state,
        "state_person",
        [
            {
                "district_number": DISTRICT,
                "person_id": 1,
                "state_id": "S000001",
                "current_identity_id": 10,
            }
        ],
    )
    dbs.add_person("state", 1, district=OTHER)  # identity 10 exists, but for the other district
    result = dbs.verify()
    assert result.mismatched == [1]
    assert {d.column for d in result.issues[0].diffs} >= {"last_name", "birth_date"}
    assert result.issues[0].diffs[0] == ColumnDiff("last_name", "Smith", None)


def test_keys_subset(dbs: Dbs) -> None:
    for pid in range(1, 11):
        dbs.add_both(pid)
    dbs.add_person("district", 11)
    dbs.add_person("state", 12)
    with dbs.state.begin() as conn:
        conn.exec_driver_sql("UPDATE state_identity SET gender = 'M' WHERE identity_id IN (30, 70)")
    full = dbs.verify()
    assert key_sets(full) == ([11], [12], [3, 7])

    result = dbs.verify(keys=[7, 12, 11, 2, 404, 7])
    assert key_sets(result) == ([11], [12], [7])
    assert result.keys_requested == 5  # distinct keys asked for
    # 404 is on neither side: not counted anywhere.
    assert (result.at_district, result.at_state, result.distinct) == (3, 3, 4)

    empty = dbs.verify(keys=[])
    assert (empty.at_district, empty.at_state, empty.keys_requested, empty.accuracy) == (
        0,
        0,
        0,
        100.0,
    )


def test_keys_must_be_numbers(dbs: Dbs) -> None:
    with pytest.raises(BadInput):
        dbs.verify(keys=["12a"])


def test_many_keys_span_several_in_batches(dbs: Dbs) -> None:
    rows_d = [
        {"person_id": p, "state_id": f"S{p}", "current_identity_id": None} for p in range(1, 1301)
    ]
    rows_s = [r | {"district_number": DISTRICT} for r in rows_d if r["person_id"] % 100]
    rows_s[5]["state_id"] = "changed"  # person 7
    insert(dbs.district, "person", rows_d)
    insert(dbs.state, "state_person", rows_s)
    keys = list(range(0, 1400, 1))
    result = dbs.verify(keys=keys, chunk_rows=250)
    assert result.missing_at_state == list(range(100, 1301, 100))
    assert result.mismatched == [6]
    assert result.at_district == 1300
    got = fetch_compared_rows(dbs.district, PERSON, "district", DISTRICT, keys)
    assert len(got) == 1300
    assert got[6][0] == "S6"


def test_enrollment_diffs_use_date_and_int_normalisers(dbs: Dbs) -> None:
    dbs.add_both(1)
    enrollment = {
        "enrollment_id": 500,
        "person_id": 1,
        "school_id": 12,
        "end_year": 2024,
        "grade": "05",
        "start_date": "2023-08-20",
        "start_status": "E1",
        "end_date": None,
        "end_status": None,
        "service_type": "P",
    }
    insert(dbs.district, "enrollment", [enrollment, enrollment | {"enrollment_id": 501}])
    state_rows = [
        enrollment | {"district_number": DISTRICT, "start_date": "2023-08-20 00:00:00"},
        enrollment | {"district_number": DISTRICT, "enrollment_id": 501, "school_id": 13},
    ]
    insert(dbs.state, "state_enrollment", state_rows)
    result = dbs.verify(ENROLLMENT)
    assert key_sets(result) == ([], [], [501])
    assert result.issues[0].diffs == (ColumnDiff("school_id", 12, 13),)


# ------------------------------------------------------------------ windows vs a naive reference


def _trim(value):
    return value.strip(" ") if isinstance(value, str) else value


def _date(value):
    return value[:10] if isinstance(value, str) else value


def _reference(district_rows: dict[int, dict], state_rows: dict[int, dict]):
    """The three sets computed naively in Python from the raw rows."""
    compared = ("state_id", "last_name", "first_name", "middle_name", "birth_date", "gender")

    def norm(row):
        return tuple(_date(row[c]) if c == "birth_date" else _trim(row[c]) for c in compared)

    d_keys, s_keys = district_rows.keys(), state_rows.keys()
    return (
        sorted(d_keys - s_keys),
        sorted(s_keys - d_keys),
        sorted(k for k in d_keys & s_keys if norm(district_rows[k]) != norm(state_rows[k])),
    )


@pytest.fixture(scope="module")
def scattered(tmp_path_factory) -> tuple[Dbs, tuple]:
    """600 person IDs with differences of every kind in runs and singletons."""
    dbs = Dbs(tmp_path_factory.mktemp("scattered"))
    rng = random.Random(11)
    district_rows: dict[int, dict] = {}
    state_rows: dict[int, dict] = {}
    for pid in range(1, 601):
        row = {
            "state_id": f"S{pid}",
            "last_name": rng.choice(["Smith", "Lee", "Garcia"]),
            "first_name": rng.choice(["Ann", "Bo", "Cy"]),
            "middle_name": rng.choice([None, "", "J"]),
            "birth_date": f"2010-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "gender": rng.choice(["F", "M"]),
        }
        # Runs of consecutive differences make windows on both sides disagree in length.
        fate = rng.choices(
            ["same", "d_only", "s_only", "diff", "cosmetic"], weights=[70, 8, 8, 8, 6]
        )[0]
        if pid % 50 in (10, 11, 12, 13):
            fate = "d_only"
        if pid % 50 in (30, 31, 32, 33, 34):
            fate = "s_only"
        other = dict(row)
        if fate == "diff":
            column = rng.choice(["last_name", "middle_name", "birth_date", "state_id"])
            other[column] = {
                "last_name": "Changed",
                "middle_name": "" if row["middle_name"] is None else None,
                "birth_date": "2001-01-01",
                "state_id": None,
            }[column]
        elif fate == "cosmetic":  # equal after normalisation
            other["last_name"] = row["last_name"] + "   "
            other["birth_date"] = row["birth_date"] + " 00:00:00"
        if fate != "s_only":
            district_rows[pid] = row
        if fate != "d_only":
            state_rows[pid] = other
    dbs.add_people("district", district_rows)
    dbs.add_people("state", state_rows)
    # The other district holds every ID, all different: none may leak in.
    dbs.add_people("state", {pid: {"last_name": "Elsewhere"} for pid in range(1, 650)}, OTHER)
    return dbs, _reference(district_rows, state_rows)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 64, 1000])
def test_windows_match_naive_reference(scattered, chunk_rows: int) -> None:
    dbs, expected = scattered
    assert all(expected) and sum(map(len, expected)) > 100
    result = dbs.verify(chunk_rows=chunk_rows)
    assert key_sets(result) == expected
    assert [i.key for i in result.issues] == sorted(k for ks in expected for k in ks)


@pytest.mark.parametrize("chunk_rows", [3, 1000])
def test_keys_match_naive_reference(scattered, chunk_rows: int) -> None:
    dbs, expected = scattered
    keys = set(range(0, 700, 3))
    result = dbs.verify(keys=keys, chunk_rows=chunk_rows)
    assert key_sets(result) == tuple([k for k in kind if k in keys] for kind in expected)


def test_read_ahead_threads_give_the_same_sets(scattered) -> None:
    """The reader used against servers (one thread per side), here on the SQLite files."""
    dbs, expected = scattered
    sink = _Collector(PERSON, with_diffs=True)
    readers = [
        _Prefetch(lambda e=engine, s=side: _side_chunks(e, PERSON, s, DISTRICT, None, 5), side)
        for engine, side in ((dbs.district, "district"), (dbs.state, "state"))
    ]
    try:
        _merge(readers[0], readers[1], sink)
    finally:
        for reader in readers:
            reader.close()
    assert (sink.missing_at_state, sink.missing_at_district, sink.mismatched) == expected


def test_read_ahead_thread_passes_errors_and_stops_when_closed() -> None:
    closed = []

    def failing():
        yield [(1,)]
        raise RuntimeError("connection lost")

    def endless():
        try:
            n = 0
            while True:
                n += 1
                yield [(n,)]
        finally:
            closed.append(True)

    reader = _Prefetch(failing, "failing")
    seen = []
    with pytest.raises(RuntimeError, match="connection lost"):
        for chunk in reader:
            seen.append(chunk)
    reader.close()
    assert seen == [[(1,)]]

    reader = _Prefetch(endless, "endless")
    assert next(iter(reader)) == [(1,)]
    reader.close()
    assert closed == [True]


# ------------------------------------------------------------------ district, accuracy, errors


@pytest.mark.parametrize(
    ("distinct", "errors", "expected"),
    [(3857, 23, 99.40), (910, 2, 99.78), (1, 0, 100.00), (0, 0, 100.0)],
)
def test_accuracy_matches_the_products_figures(distinct: int, errors: int, expected: float) -> None:
    assert round(accuracy(distinct, errors), 2) == expected


def test_verify_district_covers_every_object(dbs: Dbs) -> None:
    dbs.add_both(1)
    dbs.add_person("district", 2)
    summary = verify_district(dbs.district, dbs.state, DISTRICT, "MAPLE VALLEY")
    assert [o.object for o in summary.objects] == ["PersonIdentity", "Enrollment", "Graduation"]
    assert summary.objects[0].missing_at_state == [2]
    # 2 distinct persons, 1 error, nothing else anywhere.
    assert summary.overall_accuracy == 50.0
    only = verify_district(dbs.district, dbs.state, DISTRICT, "MAPLE VALLEY", ["enrollment"])
    assert [o.object for o in only.objects] == ["Enrollment"]


def test_verify_district_unknown_object(dbs: Dbs) -> None:
    with pytest.raises(BadInput, match="unknown object"):
        verify_district(dbs.district, dbs.state, DISTRICT, "X", ["Nope"])


def test_verify_district_missing_tables(tmp_path: Path, dbs: Dbs) -> None:
    empty = make_engine(sqlite_url(tmp_path / "empty.db"), must_exist=False)
    with empty.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE unrelated (x INTEGER)")
    with pytest.raises(SchemaMissing, match="state database"):
        verify_district(dbs.district, empty, DISTRICT, "X")


def test_verify_district_unreachable_database(dbs: Dbs) -> None:
    down = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable, match="cannot reach the district database"):
        verify_district(down, dbs.state, DISTRICT, "X")


# ------------------------------------------------------------------ the demo's seeded discrepancies


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from selective_sync import demo as generator

    directory = tmp_path_factory.mktemp("demo")
    manifest = generator.generate_demo(directory, persons=400, seed=7)
    district = make_engine(sqlite_url(directory / "district.db"))
    state = make_engine(sqlite_url(directory / "state.db"))
    return district, state, manifest


def test_verify_district_finds_exactly_the_manifest(demo) -> None:
    district, state, manifest = demo
    summary = verify_district(
        district, state, manifest.district_number, manifest.district_name, chunk_rows=97
    )
    assert [o.object for o in summary.objects] == list(REGISTRY)
    for result in summary.objects:
        for kind in ISSUE_KINDS:
            expected = manifest.keys(result.object, kind)
            assert expected, f"{result.object}: the demo seeds no {kind}"
            assert getattr(result, kind) == expected, (result.object, kind)
        mismatches = [i for i in result.issues if i.issue == "mismatched"]
        assert mismatches and all(i.diffs for i in mismatches)


def test_keys_subset_of_the_demo(demo) -> None:
    """Sync verifies its keys first: exactly the manifest's kinds for those keys."""
    district, state, manifest = demo
    for name in REGISTRY:
        seeded = manifest.error_keys(name)
        keys = seeded[::2] + [1, 2, 3, 10**9]
        result = verify_object(
            district, state, get_object(name), manifest.district_number, keys, chunk_rows=5
        )
        for kind in ISSUE_KINDS:
            assert getattr(result, kind) == [k for k in manifest.keys(name, kind) if k in keys]
