"""Find IDs: the district's persons or enrollments that match an ad hoc filter.

An administrator rarely knows personIDs or enrollmentIDs by heart. :func:`build_query`
checks a filter set (names, birth date, state ID, school, grade, end year) and
:func:`find_records` lists the matching district records, capped, with the true count of
the rest.

Every filter is a bound parameter of one SELECT on the district database. Names match
case- and accent-insensitively by prefix (``jose`` finds ``José``, ``ÖZ`` finds
``Özdemir``), after trimming spaces as verification does. No portable SQL folds accents
(SQLite has no unaccent, PostgreSQL's extension may be absent, MariaDB's collations fold
differently), so the SQL only narrows: it keeps the names whose lower-cased ASCII text
starts with the prefix, plus every name holding a non-ASCII character; :func:`fold` then
decides in Python while the rows stream, the same way on every vendor. Only the first
``limit`` matches in display order are kept (a bounded heap) and the others are counted, so
memory stays bounded whatever matches.
"""

from .names import fold
from .query import (
    DEFAULT_LIMIT,
    FILTER_OPTIONS,
    KEY_LABEL,
    MAX_LIMIT,
    MAX_NAME_LEN,
    MAX_STATE_ID_LEN,
    FindObject,
    FindQuery,
    SummaryKeys,
    SummaryKind,
    build_query,
    summary_keys,
)
from .results import EnrollmentRow, FindResult, KeyOnly, PersonRow, Record
from .search import CHUNK_ROWS, find_in_district, find_records, stored_keys

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_LIMIT",
    "FILTER_OPTIONS",
    "KEY_LABEL",
    "MAX_LIMIT",
    "MAX_NAME_LEN",
    "MAX_STATE_ID_LEN",
    "EnrollmentRow",
    "FindObject",
    "FindQuery",
    "FindResult",
    "KeyOnly",
    "PersonRow",
    "Record",
    "SummaryKeys",
    "SummaryKind",
    "build_query",
    "find_in_district",
    "find_records",
    "fold",
    "stored_keys",
    "summary_keys",
]
