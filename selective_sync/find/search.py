"""Find IDs: the search over a district database: the SELECTs of one query, the rows
streamed through the name test into a bounded heap, and the school filter's resolution."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, Select, String, func, select, type_coerce

from selective_sync.settings import resolve_district

from ..db import IN_LIST_SIZE, check_schema, chunked, make_engine
from ..errors import BadInput
from ..schema import district_table
from ..settings import Settings
from .names import _may_start_with, fold
from .query import FindObject, FindQuery, SummaryKeys, SummaryKind, summary_keys
from .results import EnrollmentRow, FindResult, KeyOnly, PersonRow, Record

log = logging.getLogger(__name__)

CHUNK_ROWS = 5_000
# Keys per IN (...) list: far below every vendor's bound-parameter limit.


def find_records(
    engine: Engine,
    query: FindQuery,
    district_number: int,
    *,
    keys: SummaryKeys | None = None,
) -> FindResult:
    """The district records matching ``query`` (restricted to ``keys`` when given)."""
    result = FindResult(
        object=query.object.value,
        key_label=query.key_label,
        district_number=district_number,
        records=[],
        total=0,
        limit=query.limit,
        filters=dict(query.shown),
        from_summary=keys.kind if keys else None,
        verified_at=keys.verified_at if keys else None,
    )
    if keys is not None and keys.kind is SummaryKind.missing_at_district:
        # At the state only: there is no district row to show or filter.
        result.records = [KeyOnly(k) for k in keys.keys[: query.limit]]
        result.total = len(keys.keys)
        return result
    with engine.connect() as conn:
        school = _resolve_school(conn, query.school) if query.school is not None else None
        if school is not None:
            result.filters["school"] = f"{school[0]} {school[1] or ''}".strip()
        plan = _Plan(query, school[0] if school else None, engine.dialect.name)
        if keys is not None:
            # Summary order (by key); a key gone from the district is still listed unless a
            # filter asked something of its row.
            matches = plan.by_keys(conn, keys.keys, keep_missing=not query.filtered)
            top, result.total = _first(matches, query.limit, _by_key)
        else:
            matches = plan.matches(conn, engine)
            top, result.total = _first(matches, query.limit, _by_name)
    result.records = [plan.record(row) for row in top]
    return result


def _first(rows: Iterable[tuple], limit: int, key: Callable[[tuple], Any]) -> tuple[list, int]:
    """The ``limit`` smallest rows by ``key`` (a bounded heap), and how many rows there were."""
    count = 0

    def counted() -> Iterator[tuple]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    top = heapq.nsmallest(limit, counted(), key=key)
    return top, count


# Raw rows: (key, person_id, state_id, last, first, birth, [enrollment columns...]).
def _by_name(row: tuple) -> tuple:
    return (fold(row[3] or ""), fold(row[4] or ""), row[1], *row[9:10], row[0])


def _by_key(row: tuple) -> tuple:
    return (row[0],)


class _Plan:
    """The SELECTs for one query, and the name test applied to their rows."""

    def __init__(self, query: FindQuery, school_id: int | None, dialect: str) -> None:
        self.query = query
        self.dialect = dialect
        self.person = district_table("person")
        self.identity = district_table("identity")
        self.enrollment = district_table("enrollment")
        self.school = district_table("school")
        self.school_id = school_id

    # ---- conditions (bound parameters only)

    def _person_conditions(self) -> list:
        q, conditions = self.query, []
        if q.last is not None:
            conditions.append(_may_start_with(self.identity.c.last_name, q.last, self.dialect))
        if q.first is not None:
            conditions.append(_may_start_with(self.identity.c.first_name, q.first, self.dialect))
        if q.birth_date is not None:
            # A range, not equality: SQLite may store a date as '2010-05-01 00:00:00'.
            born = self.identity.c.birth_date
            conditions += [born >= q.birth_date, born < q.birth_date + timedelta(days=1)]
        if q.state_id is not None:
            conditions.append(func.trim(self.person.c.state_id) == q.state_id)
        return conditions

    def _enrollment_conditions(self) -> list:
        q, e, conditions = self.query, self.enrollment, []
        if self.school_id is not None:
            conditions.append(e.c.school_id == self.school_id)
        if q.grade is not None:
            conditions.append(func.upper(func.trim(e.c.grade)) == q.grade)
        if q.end_year is not None:
            conditions.append(e.c.end_year == q.end_year)
        return conditions

    # ---- statements

    def _person_select(self, correlated: bool = False) -> Select:
        p, i = self.person, self.identity
        stmt = (
            select(p.c.person_id, p.c.person_id, p.c.state_id)
            .add_columns(i.c.last_name, i.c.first_name, _raw(i.c.birth_date))
            .select_from(p.outerjoin(i, i.c.identity_id == p.c.current_identity_id))
            .where(*self._person_conditions())
        )
        if self.query.enrollment_filtered:
            # Persons with at least one enrollment matching every enrollment filter. Scanning
            # every person, IN (...) reads the enrollments once; for a few keys, EXISTS looks
            # each person up by the indexed enrollment.person_id instead.
            e = self.enrollment
            if correlated:
                enrolled = select(e.c.enrollment_id).where(
                    e.c.person_id == p.c.person_id, *self._enrollment_conditions()
                )
                stmt = stmt.where(enrolled.exists())
            else:
                enrolled = select(e.c.person_id).where(*self._enrollment_conditions())
                stmt = stmt.where(p.c.person_id.in_(enrolled))
        return stmt

    def _enrollment_select(self) -> Select:
        e, p, i, s = self.enrollment, self.person, self.identity, self.school
        joined = (
            e.outerjoin(p, p.c.person_id == e.c.person_id)
            .outerjoin(i, i.c.identity_id == p.c.current_identity_id)
            .outerjoin(s, s.c.school_id == e.c.school_id)
        )
        return (
            select(e.c.enrollment_id, e.c.person_id, p.c.state_id)
            .add_columns(i.c.last_name, i.c.first_name, _raw(i.c.birth_date))
            .add_columns(e.c.school_id, s.c.name, e.c.grade, e.c.end_year)
            .add_columns(_raw(e.c.start_date), _raw(e.c.end_date))
            .select_from(joined)
            .where(*self._person_conditions(), *self._enrollment_conditions())
        )

    def _root(self, correlated: bool = False) -> tuple[Select, Any]:
        if self.query.object is FindObject.PersonIdentity:
            return self._person_select(correlated), self.person.c.person_id
        return self._enrollment_select(), self.enrollment.c.enrollment_id

    # ---- rows

    def _named(self, rows: Iterable[tuple]) -> Iterator[tuple]:
        """The rows whose last and first names start with the query's (folded) prefixes."""
        last, first = self.query.last, self.query.first
        if last is None and first is None:
            yield from rows
            return
        for row in rows:
            if last is not None and not (row[3] and fold(row[3]).startswith(last)):
                continue
            if first is not None and not (row[4] and fold(row[4]).startswith(first)):
                continue
            yield row

    def matches(self, conn: Connection, engine: Engine) -> Iterator[tuple]:
        """Every matching row, streamed."""
        q = self.query
        if q.object is FindObject.PersonIdentity or not q.person_filtered:
            stmt, _ = self._root()
            yield from self._named(_stream(conn, stmt))
            return
        # Enrollments of matching persons: scan the persons (one row each, cheap to fold),
        # then fetch their enrollments by the indexed enrollment.person_id, a batch at a time,
        # on a second connection (a MariaDB connection cannot query while it streams).
        persons = self._named(_stream(conn, self._person_select()))
        stmt = self._enrollment_select()
        with engine.connect() as side:
            while batch := [row[1] for row in islice(persons, IN_LIST_SIZE)]:
                found = side.execute(stmt.where(self.enrollment.c.person_id.in_(batch)))
                yield from (tuple(row) for row in found)

    def by_keys(self, conn: Connection, keys: Sequence[int], keep_missing: bool) -> Iterator[tuple]:
        """The matching rows of ``keys`` in key order; a key with no row as ``(key,)``."""
        stmt, key_column = self._root(correlated=True)
        for batch in chunked(keys):
            found = {row[0]: tuple(row) for row in conn.execute(stmt.where(key_column.in_(batch)))}
            for key in batch:
                row = found.get(key)
                if row is None:
                    if keep_missing:
                        yield (key,)
                elif next(self._named([row]), None) is not None:
                    yield row

    def record(self, row: tuple) -> Record:
        if len(row) == 1:
            return KeyOnly(row[0])
        birth = _as_date(row[5])
        if self.query.object is FindObject.PersonIdentity:
            return PersonRow(row[1], row[2], row[3], row[4], birth)
        return EnrollmentRow(
            enrollment_id=row[0],
            person_id=row[1],
            state_id=row[2],
            last_name=row[3],
            first_name=row[4],
            birth_date=birth,
            school_id=row[6],
            school_name=row[7],
            grade=(row[8] or "").strip(),
            end_year=row[9],
            start_date=_as_date(row[10]),
            end_date=_as_date(row[11]),
        )


def _raw(column):
    """A date column as the driver returns it: SQLAlchemy's SQLite date processor refuses
    a hand-edited '2010-05-01 00:00:00'; :func:`_as_date` takes either form."""
    return type_coerce(column, String)


def _stream(conn: Connection, stmt: Select) -> Iterator[tuple]:
    """The statement's rows as plain tuples, fetched a chunk at a time (server-side cursors
    on PostgreSQL and MariaDB, so memory stays bounded)."""
    result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(stmt)
    for chunk in result.partitions():
        yield from map(tuple, chunk)


def _as_date(value: Any) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, datetime):
        return value.date()
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _resolve_school(conn: Connection, text: str) -> tuple[int, str | None]:
    """The district school named by ID or name (case- and accent-insensitive, a unique
    prefix will do); BadInput lists the district's schools when none or several match."""
    s = district_table("school")
    schools = [(row[0], row[1]) for row in conn.execute(select(s.c.school_id, s.c.name))]
    if text.isdigit():
        wanted = int(text)
        for school_id, name in schools:
            if school_id == wanted:
                return school_id, name
        # Enrollments may name a school the district's school table lacks.
        e = district_table("enrollment")
        if conn.execute(select(e.c.school_id).where(e.c.school_id == wanted).limit(1)).first():
            return wanted, None
    else:
        folded = fold(text)
        exact = [sc for sc in schools if fold(sc[1]) == folded]
        found = exact or [sc for sc in schools if fold(sc[1]).startswith(folded)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listed = ", ".join(f"{i} {n}" for i, n in sorted(found))
            raise BadInput(f"school {text!r} is ambiguous: it matches {listed}")
    listed = ", ".join(f"{i} {n}" for i, n in sorted(schools)[:20])
    more = f" and {len(schools) - 20} more" if len(schools) > 20 else ""
    raise BadInput(f"unknown school {text!r}: the district's schools are {listed}{more}")


def find_in_district(
    settings: Settings,
    query: FindQuery,
    district: int | None = None,
    keys: SummaryKeys | None = None,
) -> FindResult:
    """:func:`find_records` on one configured district's database (default: the configured
    district). The caller has checked the acting user's R right."""
    config = resolve_district(settings, district)
    engine = make_engine(config.url)
    try:
        check_schema(engine, "district")
        return find_records(engine, query, config.number, keys=keys)
    finally:
        engine.dispose()


def stored_keys(settings: Settings, query: FindQuery, district: int) -> SummaryKeys | None:
    """The keys of the district's latest stored Verification Summary that ``query`` asks for
    (``from_summary``), or None when it asks for none; BadInput when none is stored."""
    if query.from_summary is None:
        return None
    # Imported here: the store is only needed for this option.
    from ..verification.store import DatabaseSummaryStore

    stored = DatabaseSummaryStore(settings).load_latest_summary(district)
    return summary_keys(stored, query.object, query.from_summary)
