"""One normalisation story: the registry's rules mean the same in verification (SQL on
SQLite, PostgreSQL and MariaDB, and the digest built from it), in the sync's "unchanged"
test (Python) and in the docs. One table of cases holds all of them."""

from __future__ import annotations

import unicodedata
from contextlib import contextmanager
from pathlib import Path

import pytest
from dbservers import server_database
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, select

from selective_sync import registry
from selective_sync.db import make_engine
from selective_sync.settings import sqlite_url
from selective_sync.sync.plan import normalise
from selective_sync.verification.digest import token
from selective_sync.verification.normalise import normalised

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")

# (normaliser, one value, another value, equal after normalising?)
CASES: list[tuple[str, object, object, bool]] = [
    ("trim", "Ann", "Ann  ", True),
    ("trim", "Ann", "  Ann", True),
    ("trim", "Ann", "\tAnn\t", True),
    ("trim", "Ann", "Ann\r", True),
    ("trim", "Ann", "Ann\r\n", True),
    ("trim", "Ann", " \t\r\n Ann \n\t ", True),
    ("trim", "Ann", "Ann\u00a0", False),  # a no-break space is not ASCII white space
    ("trim", "Ann", "\u00a0Ann", False),
    ("trim", "Ann", "Ann\x0b", False),  # nor is a vertical tab
    ("trim", "Mary Ann", "Mary  Ann", False),  # inner white space is kept
    ("trim", "Mary\tAnn", "Mary\tAnn ", True),
    ("trim", NFC, NFD, False),  # no Unicode normalisation: NFC and NFD differ
    ("trim", NFC, NFC + " ", True),
    ("trim", None, "", False),  # NULL is never ''
    ("trim", None, " \t", False),
    ("trim", "", " \t\r\n", True),
    ("trim", None, None, True),
    ("exact", "Ann", "Ann ", False),
    ("exact", "Ann", "Ann", True),
    ("exact", None, "", False),
    ("exact", NFC, NFD, False),
    ("date", "2010-05-01", "2010-05-01 00:00:00", True),
    ("date", "2010-05-01", "2010-05-01T00:00:00", True),
    ("date", "2010-05-01 00:00:00", "2010-05-01T00:00:00", True),
    ("date", "2010-05-01", "2010-05-02", False),
    ("date", None, "2010-05-01", False),
    ("date", None, None, True),
    ("int", 5, 5, True),
    ("int", 5, 6, False),
    ("int", None, 0, False),
]
CASE_IDS = [f"{how}:{a!r}~{b!r}" for how, a, b, _ in CASES]

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


@pytest.mark.parametrize(("how", "a", "b", "equal"), CASES, ids=CASE_IDS)
def test_sync_unchanged_test_follows_the_table(how, a, b, equal):
    assert (normalise(a, how) == normalise(b, how)) is equal


def test_the_docs_say_what_the_code_does():
    """The registry documents what ``trim`` strips, and that is what every side strips."""
    assert registry.TRIM_CHARS == " \t\r\n"
    doc = " ".join(registry.__doc__.split()) + " ".join(_normaliser_doc().split())
    for words in ("space, TAB, CR and LF", "no-break space", "NFC and NFD", "2010-05-01T00:00:00"):
        assert words in doc, words
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "space, TAB, CR and LF" in " ".join(readme.split())


def _normaliser_doc() -> str:
    source = Path(registry.__file__).read_text(encoding="utf-8")
    start = source.index("Normaliser = Literal")
    return source[start : source.index("TRIM_CHARS =", start)]


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
            metadata.create_all(engine)
            rows = []
            for n, (how, a, b, _) in enumerate(CASES):
                for offset, value in ((0, a), (1, b)):
                    row = {"id": 2 * n + offset, "t": None, "d": None, "i": None}
                    row[COLUMN[how]] = value
                    rows.append(row)
            with engine.begin() as conn:
                # Raw values: a date goes in as the text given (SQLite keeps it as text).
                conn.exec_driver_sql(
                    f"INSERT INTO norm_cases (id, t, d, i) VALUES ({_marks(engine)})",
                    [(r["id"], r["t"], r["d"], r["i"]) for r in rows],
                )
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
            for n, (*_values, equal) in enumerate(CASES):
                (value_a, token_a), (value_b, token_b) = results[n]
                assert (value_a == value_b) is equal, (kind, CASE_IDS[n], value_a, value_b)
                assert (token_a == token_b) is equal, (kind, CASE_IDS[n], token_a, token_b)
        finally:
            engine.dispose()


def _marks(engine) -> str:
    return ", ".join(["?"] * 4) if engine.dialect.name == "sqlite" else ", ".join(["%s"] * 4)
