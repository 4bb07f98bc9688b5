"""One normalisation story, two rules: verification compares after the registry's
normalisation (SQL on SQLite, PostgreSQL and MariaDB, the digest built from it, and its
Python model ``sync.plan.normalise``), while a sync writes whatever is not exactly the
district's value as the state stores it. One table of cases holds both columns."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from dbservers import server_database
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, select, update

from selective_sync import normalisation_cases, registry
from selective_sync.db import make_engine
from selective_sync.settings import sqlite_url
from selective_sync.sync.plan import changed, district_columns, normalise, state_columns
from selective_sync.verification.digest import token
from selective_sync.verification.normalise import normalised

# (normaliser, district value, state value, *verification* equal?, *sync* writes?)
CASES = [case[:5] for case in normalisation_cases.CASES]
CASE_IDS = [f"{how}:{a!r}~{b!r}" for how, a, b, *_ in CASES]

COLUMN = {"trim": "t", "exact": "t", "date": "d", "int": "i"}

metadata = MetaData()
cases_table = Table(
    "norm_cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("t", String(40)),
    Column("d", Date),
    Column("i", Integer),
)


@pytest.mark.parametrize(("how", "a", "b", "equal", "_writes"), CASES, ids=CASE_IDS)
def test_python_model_of_verification_follows_the_table(how, a, b, equal, _writes):
    """``sync.plan.normalise``: the model the digest property test checks verification
    against, and what names a difference verification ignores in a sync's reason."""
    assert (normalise(a, how) == normalise(b, how)) is equal


def test_the_docs_say_what_the_code_does():
    """The registry documents what ``trim`` strips, and that is what every side strips;
    and it states the two rules side by side."""
    assert registry.TRIM_CHARS == " \t\r\n"
    doc = " ".join(registry.__doc__.split()) + " ".join(_normaliser_doc().split())
    for words in (
        "space, TAB, CR and LF",
        "no-break space",
        "NFC and NFD",
        "2010-05-01T00:00:00",
        "Two rules, side by side",
        "*Verification*",
        "*A sync* of a key",
        "byte for byte",
        "converted to the state column's type",
        "changed 1 row (1 update): white space only",
    ):
        assert words in doc, words
    guide = Path(__file__).resolve().parents[1] / "docs" / "how-it-works" / "normalisation.md"
    assert "space, TAB, CR and LF" in " ".join(guide.read_text(encoding="utf-8").split())


def _normaliser_doc() -> str:
    source = Path(registry.__file__).read_text(encoding="utf-8")
    start = source.index("Normaliser = Literal")
    return source[start : source.index("@dataclass", start)]


@contextmanager
def _database(kind: str, tmp_path: Path):
    if kind == "sqlite":
        yield sqlite_url(tmp_path / "cases.db")
        return
    with server_database(kind) as url:
        yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_verification_sql_follows_the_table(kind, tmp_path):
    """Each case's two values stored in a real table of each vendor: the normalised values
    and the digest tokens are equal exactly when the table says so."""
    with _database(kind, tmp_path) as url:
        engine = make_engine(url, must_exist=False)
        try:
            _store_cases(engine)
            dialect = engine.dialect.name
            results = {}
            with engine.connect() as conn:
                for n, (how, *_rest) in enumerate(CASES):
                    column = cases_table.c[COLUMN[how]]
                    stmt = (
                        select(normalised(column, how, dialect), token(column, how, dialect))
                        .where(cases_table.c.id.in_([2 * n, 2 * n + 1]))
                        .order_by(cases_table.c.id)
                    )
                    results[n] = conn.execute(stmt).all()
            for n, (*_values, equal, _writes) in enumerate(CASES):
                (value_a, token_a), (value_b, token_b) = results[n]
                assert (value_a == value_b) is equal, (kind, CASE_IDS[n], value_a, value_b)
                assert (token_a == token_b) is equal, (kind, CASE_IDS[n], token_a, token_b)
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mariadb"])
def test_sync_writes_follows_the_table(kind, tmp_path):
    """Each case's district value and state value stored in a real table of each vendor,
    read as the sync reads each side: the sync's exact test says it writes exactly when
    the table says so; the district's value written and read back is then exactly it."""
    with _database(kind, tmp_path) as url:
        engine = make_engine(url, must_exist=False)
        try:
            _store_cases(engine)
            outcomes = {}
            with engine.begin() as conn:
                for n, (how, *_rest) in enumerate(CASES):
                    name = COLUMN[how]
                    district, state = _read_case(conn, n, name)
                    writes = bool(changed([name], district, state))
                    # As the sync writes: the column's own type binds the district's value.
                    conn.execute(
                        update(cases_table)
                        .where(cases_table.c.id == 2 * n + 1)
                        .values({name: district[name]})
                    )
                    _, written = _read_case(conn, n, name)
                    outcomes[n] = (writes, changed([name], district, written))
            for n, (*_values, expected) in enumerate(CASES):
                expected = expected if isinstance(expected, bool) else kind in expected
                writes, after = outcomes[n]
                assert writes is expected, (kind, CASE_IDS[n])
                assert after == [], (kind, CASE_IDS[n], "differs after the write")
        finally:
            engine.dispose()


def _store_cases(engine) -> None:
    """Case n: the district's value in row 2n, the state's in row 2n + 1, raw (a date goes
    in as the text given: SQLite keeps it as text)."""
    metadata.create_all(engine)
    rows = []
    for n, (how, a, b, *_) in enumerate(CASES):
        for offset, value in ((0, a), (1, b)):
            row = {"id": 2 * n + offset, "t": None, "d": None, "i": None}
            row[COLUMN[how]] = value
            rows.append(row)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"INSERT INTO norm_cases (id, t, d, i) VALUES ({_marks(engine)})",
            [(r["id"], r["t"], r["d"], r["i"]) for r in rows],
        )


def _read_case(conn, n: int, name: str) -> tuple[dict, dict]:
    """Case n's district row read as the sync reads the district, and its state row as it
    reads the state."""
    rows = {}
    for offset, columns in ((0, district_columns), (1, state_columns)):
        stmt = select(*columns(cases_table, [name])).where(cases_table.c.id == 2 * n + offset)
        rows[offset] = dict(conn.execute(stmt).one()._mapping)
    return rows[0], rows[1]


def _marks(engine) -> str:
    return ", ".join(["?"] * 4) if engine.dialect.name == "sqlite" else ", ".join(["%s"] * 4)
