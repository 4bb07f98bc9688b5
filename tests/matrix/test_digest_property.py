"""Property: the digest verdict equals the full-row verdict, for every pair of vendors.

Hypothesis generates persons with identity histories (values full of white space, the
canonical text's own marks, NULL and '', NFC/NFD spellings), writes the district copy to
one vendor and a mutated state copy to another, and checks, key by key, that

- verification (per-key digests computed by each side's SQL, compared by the client),
- the full normalised rows of both sides compared in Python (``fetch_object_rows``), and
- a model in plain Python (the generated values through the sync's ``normalise``)

all call the same keys missing, extra or mismatched.
"""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack

import pytest
from dbservers import server_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, text

from selective_sync.db import make_engine
from selective_sync.initdb import create_district_schema, create_state_schema
from selective_sync.registry import get_object
from selective_sync.schema import district_table, state_table
from selective_sync.settings import sqlite_url
from selective_sync.sync.plan import normalise
from selective_sync.verification import digest
from selective_sync.verification.digest import child_parts
from selective_sync.verification.engine import fetch_object_rows, verify_object

DISTRICT = 275
OTHER = 312
PERSON = get_object("PersonIdentity")
KINDS = ("sqlite", "postgresql", "mariadb")
PAIRS = [(d, s) for d in KINDS for s in KINDS]

# Characters that stress the canonical text and the normalisers.
ALPHABET = [
    "a", "N", "|", " ", "\t", "\r", "\n", "\u00a0", "\x1b", "\x1f", "\x1e", "é",
    "\u0301", "\\", "'", '"', "%", "ß",
]  # fmt: skip
texts = st.text(alphabet=st.sampled_from(ALPHABET), max_size=5)
names = st.one_of(st.none(), texts)
days = st.one_of(
    st.none(), st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2030, 12, 31))
)
GENDERS = ("M", "F", "N")
RACES = ("1", "6", "7")


@st.composite
def identities(draw, pid: int, slot: int) -> dict:
    return {
        "identity_id": pid * 10 + slot,
        "person_id": pid,
        "last_name": draw(texts),
        "first_name": draw(texts),
        "middle_name": draw(names),
        "suffix": draw(names),
        "birth_date": draw(days),
        "gender": draw(st.sampled_from(GENDERS)),
        "race_ethnicity": draw(st.sampled_from(RACES)),
        "effective_date": draw(days),
    }


@st.composite
def objects(draw, pid: int) -> dict:
    slots = draw(st.lists(st.integers(0, 3), unique=True, max_size=3))
    history = [draw(identities(pid, slot)) for slot in sorted(slots)]
    current = draw(
        st.one_of(
            st.none(),
            st.just(pid * 10 + 9),  # dangling: no such identity
            st.just((pid % 6 + 1) * 10),  # another person's identity (when it drew slot 0)
            *(st.just(row["identity_id"]) for row in history),
        )
    )
    return {
        "person": {"person_id": pid, "state_id": draw(names), "current_identity_id": current},
        "identity": history,
    }


def _pad(value):
    """The same value with white space that ``trim`` strips (or None as it is)."""
    return value if value is None else f" \t{value}\r\n"


@st.composite
def mutated(draw, obj: dict) -> dict | None:
    """A state copy of ``obj``: equal, noise only, or drifted; None when it is missing."""
    action = draw(
        st.sampled_from(
            ["same", "missing", "pad", "person", "drop_child", "add_child", "child", "shift"]
        )
    )
    if action == "missing":
        return None
    person = dict(obj["person"])
    history = [dict(row) for row in obj["identity"]]
    if action == "pad":
        person["state_id"] = _pad(person["state_id"])
        for row in history:
            row["last_name"] = _pad(row["last_name"])
    elif action == "person":
        person["state_id"] = draw(names)
    elif action == "drop_child" and history:
        history.pop(draw(st.integers(0, len(history) - 1)))
    elif action == "add_child":
        used = {row["identity_id"] % 10 for row in history}
        free = [slot for slot in range(4) if slot not in used]
        if free:
            history.append(draw(identities(person["person_id"], free[0])))
    elif action == "child" and history:
        row = history[draw(st.integers(0, len(history) - 1))]
        column = draw(st.sampled_from(["last_name", "middle_name", "birth_date", "gender"]))
        row[column] = {
            "last_name": draw(texts),
            "middle_name": draw(names),
            "birth_date": draw(days),
            "gender": draw(st.sampled_from(GENDERS)),
        }[column]
    elif action == "shift" and history:
        # A value end moved from one value into its neighbour: the two rows would pack
        # alike if the canonical text did not escape it. (The district copy is given
        # the mark at the start of first_name; the state copy at the end of last_name.)
        d_row = obj["identity"][0]
        d_row["first_name"] = "\x1f" + d_row["first_name"]
        history[0]["last_name"] = history[0]["last_name"] + "\x1f"
    return {"person": person, "identity": history}


@st.composite
def worlds(draw):
    """(district objects, state objects) by key; either side may lack a key."""
    district, state = {}, {}
    for pid in range(1, draw(st.integers(1, 6)) + 1):
        obj = draw(objects(pid))
        at_district = draw(st.integers(0, 9)) > 0  # now and then only at the state
        copy = draw(mutated(obj)) if at_district else obj
        if at_district:
            district[pid] = obj
        if copy is not None:
            state[pid] = copy
    return district, state


# ------------------------------------------------------------------ the Python model


def _model(obj: dict, identities: dict) -> tuple:
    """The whole object as the registry compares it, in plain Python. The compared row
    joins the current identity by id among ``identities`` (every identity on that side:
    it may be another person's)."""
    person = obj["person"]
    by_id = {row["identity_id"]: row for row in obj["identity"]}
    current = identities.get(person["current_identity_id"], {})
    compared = tuple(
        normalise((person if c.table == "person" else current).get(c.column), c.normalise)
        for c in PERSON.compared
    )
    (child,) = child_parts(PERSON)
    history = tuple(
        tuple(normalise(row[name], how) for name, how in child.columns)
        for _, row in sorted(by_id.items())
    )
    return compared, history


def _verdicts_from_model(district: dict, state: dict) -> tuple[list, list, list]:
    both = district.keys() & state.keys()
    d_ids, s_ids = _identities(district), _identities(state)
    return (
        sorted(district.keys() - state.keys()),
        sorted(state.keys() - district.keys()),
        sorted(k for k in both if _model(district[k], d_ids) != _model(state[k], s_ids)),
    )


def _identities(objs: dict) -> dict:
    return {row["identity_id"]: row for obj in objs.values() for row in obj["identity"]}


# ------------------------------------------------------------------ databases

# Each property's examples: databases make examples slow, so no deadline.
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """A district and a state database on each vendor (schema only), for the module."""
    folder = tmp_path_factory.mktemp("digest-property")
    made = {}
    with ExitStack() as stack:
        for kind in KINDS:
            for side in ("district", "state"):
                if kind == "sqlite":
                    url = sqlite_url(folder / f"{side}.db")
                else:
                    url = stack.enter_context(server_database(kind))
                engine = make_engine(url, must_exist=False)
                stack.callback(engine.dispose)
                if side == "district":
                    create_district_schema(engine)
                else:
                    create_state_schema(engine, {DISTRICT: "MAPLE VALLEY", OTHER: "OTHER"})
                made[kind, side] = engine
        yield made


def _write(engine, side: str, objs: dict) -> None:
    lookup = district_table if side == "district" else state_table
    tag = {"district_number": DISTRICT} if side == "state" else {}
    with engine.begin() as conn:
        for name in ("identity", "person"):
            conn.execute(delete(lookup(name)))
        for name in ("person", "identity"):
            rows = [
                row | tag
                for obj in objs.values()
                for row in ([obj["person"]] if name == "person" else obj["identity"])
            ]
            if rows:
                table = lookup(name)
                columns = list(rows[0])
                # text(): typeless binds, so dates go in as date objects on every vendor.
                sql = text(
                    f"INSERT INTO {table.name} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                )
                conn.execute(sql, rows)


@pytest.mark.parametrize(
    ("district_kind", "state_kind"), PAIRS, ids=[f"{d}-to-{s}" for d, s in PAIRS]
)
def test_digest_verdict_equals_full_row_verdict(engines, district_kind, state_kind):
    district_engine = engines[district_kind, "district"]
    state_engine = engines[state_kind, "state"]

    @EXAMPLES
    @given(worlds())
    def check(world):
        district, state = world
        _write(district_engine, "district", district)
        _write(state_engine, "state", state)
        result = verify_object(district_engine, state_engine, PERSON, DISTRICT, chunk_rows=2)
        digest = (result.missing_at_state, result.missing_at_district, result.mismatched)
        keys = sorted(district.keys() | state.keys())
        d_rows = fetch_object_rows(district_engine, PERSON, "district", DISTRICT, keys)
        s_rows = fetch_object_rows(state_engine, PERSON, "state", DISTRICT, keys)
        full = (
            sorted(d_rows.keys() - s_rows.keys()),
            sorted(s_rows.keys() - d_rows.keys()),
            sorted(k for k in d_rows.keys() & s_rows.keys() if d_rows[k] != s_rows[k]),
        )
        assert digest == full
        assert digest == _verdicts_from_model(district, state)
        # Every reported mismatch names what differs.
        assert all(i.diffs for i in result.issues if i.issue == "mismatched")

    check()


def _texts(engine, select) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select.order_by("key"))]


@pytest.mark.parametrize("side", ["district", "state"])
def test_every_vendor_and_form_writes_the_same_canonical_text(engines, side):
    """Byte for byte: SQLite, MariaDB and both PostgreSQL forms (the grouped one that runs
    and the joined one kept for objects with several child parts) give each key one text."""

    @EXAMPLES
    @given(worlds())
    def check(world):
        objs = world[0] if side == "district" else world[1]
        texts = {}
        for kind in KINDS:
            engine = engines[kind, side]
            _write(engine, side, objs)
            select = digest.token_select(PERSON, side, DISTRICT, engine.dialect.name, hashed=False)
            texts[kind] = _texts(engine, select)
        pg = engines["postgresql", side]
        joined = digest._joined_select(PERSON, side, DISTRICT, "postgresql", None, hashed=False)
        texts["postgresql, joined"] = _texts(pg, joined)
        assert [key for key, _ in texts["sqlite"]] == sorted(objs)
        assert all(found == texts["sqlite"] for found in texts.values()), texts

    check()
