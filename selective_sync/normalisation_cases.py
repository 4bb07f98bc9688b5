"""The normalisation table: one table of cases, two rules (see ``registry.Normaliser``).

Each case is a district value and a state value of a column compared with one normaliser,
and two answers: does *verification* find them equal, and does *a sync* write the
district's value. ``tests/test_normalisation.py`` holds every database and the Python model
to this table; the guide's normalisation page is generated from it.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")

TEXT_DATES = frozenset({"sqlite"})
"""Sync writes only where the state keeps a date as text (SQLite): a DATE column
(PostgreSQL, MariaDB) stores '2010-05-01 00:00:00' as the date 2010-05-01, which is
exactly the district's date, so there is nothing to write."""


class Case(NamedTuple):
    """One row of the table: ``writes`` is True, False or the vendors where a sync writes."""

    how: str
    district: object
    state: object
    equal: bool
    writes: bool | frozenset[str]
    note: str = ""


CASES: tuple[Case, ...] = (
    Case("trim", "Ann", "Ann", True, False),
    Case("trim", "Ann", "Ann  ", True, True),
    Case("trim", "Ann", "  Ann", True, True),
    Case("trim", "Ann", "\tAnn\t", True, True),
    Case("trim", "Ann", "Ann\r", True, True),
    Case("trim", "Ann", "Ann\r\n", True, True),
    Case("trim", "Ann", " \t\r\n Ann \n\t ", True, True),
    Case("trim", "Ann", "Ann\u00a0", False, True, "a no-break space is not ASCII white space"),
    Case("trim", "Ann", "\u00a0Ann", False, True),
    Case("trim", "Ann", "Ann\x0b", False, True, "nor is a vertical tab"),
    Case("trim", "Mary Ann", "Mary  Ann", False, True, "inner white space is kept"),
    Case("trim", "Mary\tAnn", "Mary\tAnn ", True, True),
    Case("trim", NFC, NFD, False, True, "no Unicode normalisation: NFC and NFD differ"),
    Case("trim", NFC, NFC + " ", True, True),
    Case("trim", None, "", False, True, "NULL is never ''"),
    Case("trim", "", None, False, True),
    Case("trim", None, " \t", False, True),
    Case("trim", "", " \t\r\n", True, True),
    Case("trim", None, None, True, False),
    Case("exact", "Ann", "Ann ", False, True),
    Case("exact", "Ann", "Ann", True, False),
    Case("exact", None, "", False, True),
    Case("exact", NFC, NFD, False, True),
    Case("date", "2010-05-01", "2010-05-01", True, False),
    Case("date", "2010-05-01", "2010-05-01 00:00:00", True, TEXT_DATES),
    Case("date", "2010-05-01", "2010-05-01T00:00:00", True, TEXT_DATES),
    Case("date", "2010-05-01 00:00:00", "2010-05-01T00:00:00", True, TEXT_DATES),
    Case(
        "date",
        "2010-05-01 00:00:00",
        "2010-05-01",
        True,
        False,
        "the district's date-time text is a date: the state's 'YYYY-MM-DD' is already it",
    ),
    Case("date", "2010-05-01", "2010-05-02", False, True),
    Case("date", None, "2010-05-01", False, True),
    Case("date", None, None, True, False),
    Case("int", 5, 5, True, False),
    Case("int", 5, 6, False, True),
    Case("int", None, 0, False, True),
)
