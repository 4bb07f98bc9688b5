"""Read one object's rows on both sides and plan the changes that make the state equal.

Planning is pure: it takes rows (dicts keyed by column name) and returns RowChanges. The
same plan drives a real sync and a dry run, so a dry run shows exactly what a sync writes.

The test is exact, not verification's: a row is left alone only when every copied column
the state holds equals the district's value as the state would store it (``changed``).
District dates are read as dates (the district's value converted to the state column's
type); the state's are read as stored, so a date kept as text with a time differs. A
fixed-width CHAR column on a vendor that pads it (``padded_columns``) cannot hold trailing
spaces apart from its padding, so there both sides are compared without them. The
registry's normalisers only name what kind of difference a write repairs (``Plan.summary``:
"white space only" when verification would have called the key equal).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Date,
    DateTime,
    Integer,
    String,
    Table,
    TypeDecorator,
    bindparam,
    select,
    text,
    type_coerce,
    union_all,
)

from ..db import chunked
from ..models import ColumnDiff, RowChange
from ..registry import NORMALISED_AWAY, TRIM_CHARS, Normaliser, ObjectSpec, Part
from ..schema import district_table, state_table

Row = dict[str, Any]
RowsByTable = dict[str, list[Row]]
"""One object's rows, by district table name (``person``, ``identity`` ...)."""
Padded = Mapping[str, frozenset[str]]
"""The state's padded CHAR columns by state table name (``padded_columns``)."""
NO_PADDING: Padded = {}


@dataclass(frozen=True, eq=False)
class PartInfo:
    """A part with its district and state tables and the columns copied between them."""

    part: Part
    district: Table
    state: Table
    columns: tuple[str, ...]
    """District columns that the state table also has (everything copied)."""
    normalisers: tuple[tuple[str, Normaliser], ...]
    """Each copied column's normaliser: how verification compares it."""
    normaliser: dict[str, Normaliser]
    """``normalisers`` by column."""
    # eq=False: hashed by identity, so the statement caches keyed by a PartInfo cost a
    # pointer hash rather than hashing every table, column and normaliser per call.

    @property
    def name(self) -> str:
        return self.part.table


_PART_INFOS: dict[int, tuple[ObjectSpec, tuple[PartInfo, ...]]] = {}


def part_infos(spec: ObjectSpec) -> tuple[PartInfo, ...]:
    """The object's parts, root first (parents are written before their children)."""
    # Cached by identity: hashing a frozen ObjectSpec walks all its parts and columns,
    # and this is called several times per key. The spec is kept in the value, so its
    # id cannot be reused by another object while the entry exists.
    hit = _PART_INFOS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    infos = _build_part_infos(spec)
    _PART_INFOS[id(spec)] = (spec, infos)
    return infos


def _build_part_infos(spec: ObjectSpec) -> tuple[PartInfo, ...]:
    declared = {(c.table, c.column): c.normalise for c in spec.compared}
    infos = []
    for part in sorted(spec.parts, key=lambda p: p.table != spec.root):
        dtab, stab = district_table(part.table), state_table(part.table)
        columns = tuple(c.name for c in dtab.columns if c.name in stab.c)
        norms = tuple(
            (name, declared.get((part.table, name)) or _default_normaliser(dtab.c[name].type))
            for name in columns
        )
        infos.append(PartInfo(part, dtab, stab, columns, norms, dict(norms)))
    return tuple(infos)


def _default_normaliser(type_: Any) -> Normaliser:
    # Columns the registry does not compare are still copied and compared: by type, and
    # strings exactly (only the registry may declare that white space does not count).
    if isinstance(type_, (Date, DateTime)):
        return "date"
    if isinstance(type_, Integer):
        return "int"
    if isinstance(type_, String):
        return "exact"
    return "exact"


def normalise(value: Any, how: Normaliser) -> Any:
    """A value as verification compares it: NULL stays NULL (and never equals '').

    The registry's rules (``registry.Normaliser``), exactly as verification applies them
    in SQL (``verification.normalise``): ``trim`` strips ``TRIM_CHARS`` (space, TAB, CR,
    LF) at both ends, ``date`` takes the date of text that starts with a valid
    'YYYY-MM-DD' and keeps any other text as it is. The sync does not decide what to write
    with it (``changed`` does); it only names a difference verification ignores.
    """
    if value is None:
        return None
    if how == "trim":
        return value.strip(TRIM_CHARS) if isinstance(value, str) else value
    if how == "date":
        return date_or_text(value)
    if how == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            return value
    return value


def date_or_text(value: Any) -> Any:
    """A date for a date, a date-time or text starting with a valid 'YYYY-MM-DD'; any other
    value as it is (so it compares unequal to every date and gets rewritten)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        head = value[:10]
        try:
            day = dt.date.fromisoformat(head)
        except ValueError:
            return value
        # fromisoformat also takes '20100501' and week dates: only the ISO form counts.
        return day if day.isoformat() == head else value
    return value


def stored_date(value: Any) -> Any:
    """A date column's value as stored: a date for a date, and for text exactly
    'YYYY-MM-DD' (how SQLAlchemy stores a date in SQLite); any other text as it is."""
    if type(value) is not str or len(value) != 10:
        return value
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return value
    # fromisoformat also takes week dates ('2010-W17-6'): only the ISO form is a date.
    return day if day.isoformat() == value else value


# ------------------------------------------------------------------ reading rows


class _LenientDate(TypeDecorator):
    """Reads a district DATE column as a date whatever the storage (the value the state
    column is given): SQLAlchemy's SQLite Date refuses text such as '2010-05-01 00:00:00'
    (written by another tool); this gives a date for it."""

    impl = String
    cache_ok = True

    def process_result_value(self, value, dialect):
        return date_or_text(value)


class StoredDate(TypeDecorator):
    """A state DATE column as stored: a date, or on SQLite (which keeps dates as text)
    any text other than 'YYYY-MM-DD' as it is, so that '2010-05-01 00:00:00' differs from
    the district's date and is rewritten. Binds such a value back as it was read (the
    checked update's "as planned on" values), and a date as SQLAlchemy stores it."""

    impl = Date
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Date())

    def process_bind_param(self, value, dialect):
        if dialect.name == "sqlite" and type(value) is dt.date:
            return value.isoformat()
        return value

    def process_result_value(self, value, dialect):
        return stored_date(value)


def _is_date(type_: Any) -> bool:
    return isinstance(type_, Date) and not isinstance(type_, DateTime)


def district_columns(table: Table, columns: Iterable[str]) -> list:
    """The district's columns as the state is given them: dates read as dates."""
    return [
        type_coerce(table.c[c], _LenientDate()).label(c)
        if _is_date(table.c[c].type)
        else table.c[c]
        for c in columns
    ]


def state_columns(table: Table, columns: Iterable[str]) -> list:
    """The state's columns as stored (``StoredDate``), for the exact comparison."""
    return [
        type_coerce(table.c[c], StoredDate()).label(c) if _is_date(table.c[c].type) else table.c[c]
        for c in columns
    ]


def stored_type(column: Any) -> Any:
    """The type a state column's value read by ``state_columns`` binds back with."""
    return StoredDate() if _is_date(column.type) else column.type


def read_district(
    conn: Connection, spec: ObjectSpec, keys: Sequence[int]
) -> dict[int, RowsByTable]:
    """Every row each key carries at the district: one query per part per 500 keys.

    Keys with no root row are absent from the result (not found at the district).
    """
    found: dict[int, RowsByTable] = {}
    infos = part_infos(spec)
    for chunk in chunked(keys):
        by_key: dict[int, RowsByTable] = {}
        for info in infos:
            link = info.part.link
            for row in conn.execute(_district_select(info), {"keys": chunk}).mappings():
                rows = by_key.setdefault(row[link], {})
                rows.setdefault(info.name, []).append(dict(row))
        root = spec.root
        for key in chunk:
            rows = by_key.get(key)
            if rows and rows.get(root):
                for info in infos:
                    rows.setdefault(info.name, [])
                found[key] = rows
    return found


def read_state(
    conn: Connection, spec: ObjectSpec, district_number: int, key: int, district_rows: RowsByTable
) -> RowsByTable:
    """The state's rows for (district, key), plus rows the district rows would overwrite.

    Rows are found by the link column (rows this key holds at the state now) or by id
    (a row the district has moved to this key from another one): both must be planned.
    Only ``district_number``'s rows are ever read.
    """
    result: RowsByTable = {}
    for info in part_infos(spec):
        id_name = info.part.id_column
        ids = [r[id_name] for r in district_rows.get(info.name, ())]
        by_id = bool(ids) and info.part.link != id_name
        params = {"district_number": district_number, "key": key}
        if by_id:
            params["ids"] = ids
        rows: dict[Any, Row] = {}
        for row in conn.execute(_state_select(info, by_id), params).mappings():
            rows.setdefault(row[id_name], dict(row))
        result[info.name] = list(rows.values())
    return result


def read_state_many(
    conn: Connection,
    spec: ObjectSpec,
    district_number: int,
    district_rows: Mapping[int, RowsByTable],
) -> dict[int, RowsByTable]:
    """``read_state`` for many keys at once: per part, one query per 500 keys (and one
    per 500 child ids).

    A snapshot: callers use it to find keys already equal at the state without a query
    per key, and re-read inside the transaction for keys that need writing.
    """
    result: dict[int, RowsByTable] = {}
    infos = part_infos(spec)
    for chunk in chunked(list(district_rows)):
        per_key = {k: {info.name: {} for info in infos} for k in chunk}
        for info in infos:
            id_name, link = info.part.id_column, info.part.link
            owner = {r[id_name]: k for k in chunk for r in district_rows[k].get(info.name, ())}
            queries = [(_state_select_many(info, link), {"values": chunk})]
            if owner and link != id_name:
                queries += [
                    (_state_select_many(info, id_name), {"values": ids})
                    for ids in chunked(list(owner))
                ]
            for stmt, params in queries:
                params["district_number"] = district_number
                for row in conn.execute(stmt, params).mappings():
                    for k in {row[link], owner.get(row[id_name])}:
                        if k in per_key:
                            per_key[k][info.name].setdefault(row[id_name], dict(row))
        for k, tables in per_key.items():
            result[k] = {name: list(rows.values()) for name, rows in tables.items()}
    return result


# Statements are built once and reused with bound parameters: building a SQLAlchemy
# statement per key costs more than running it on SQLite.


@cache
def _district_select(info: PartInfo):
    tab = info.district
    return (
        select(*district_columns(tab, info.columns))
        .where(tab.c[info.part.link].in_(bindparam("keys", expanding=True)))
        .order_by(tab.c[info.part.id_column])
    )


@cache
def _state_select(info: PartInfo, by_id: bool):
    tab = info.state
    columns = state_columns(tab, info.columns)
    mine = tab.c.district_number == bindparam("district_number")
    stmt = select(*columns).where(mine, tab.c[info.part.link] == bindparam("key"))
    if by_id:
        # UNION ALL, not OR: each half uses its own index (an OR falls back to scanning
        # all of the district's rows, which grows with the district).
        by_ids = tab.c[info.part.id_column].in_(bindparam("ids", expanding=True))
        stmt = union_all(stmt, select(*columns).where(mine, by_ids))
    return stmt


# ------------------------------------------------------------------ planning


@dataclass
class Plan:
    """What to write for one key: deletes (children first) and upserts (root first)."""

    changes: list[RowChange]
    upserts: dict[str, list[Row]]
    deletes: dict[str, list[int]]
    before: dict[str, dict[Any, Row]] = field(default_factory=dict)
    """The state's rows that the upserts update, as planned on (by table, then id); an
    upsert whose id is not here is an insert."""
    normalised_away: frozenset[Normaliser] = frozenset()
    """When every change is an update that verification's normalisation hides, the
    normalisers that hide them (the key was equal to verification); else empty."""

    def __bool__(self) -> bool:
        return bool(self.changes)

    def summary(self) -> str:
        """e.g. ``3 rows (1 insert, 1 update, 1 delete)``, or ``1 row (1 update): white
        space only`` for a key verification calls equal."""
        counts = {"insert": 0, "update": 0, "delete": 0}
        for change in self.changes:
            counts[change.action] += 1
        parts = [f"{n} {action}" for action, n in counts.items() if n]
        total = len(self.changes)
        text = f"{total} row{'s' if total != 1 else ''} ({', '.join(parts)})"
        if self.normalised_away:
            kinds = [NORMALISED_AWAY[how] for how in NORMALISED_AWAY if how in self.normalised_away]
            text += f": {' and '.join(kinds)} only"
        return text


def plan_changes(
    spec: ObjectSpec,
    key: int,
    district_rows: Mapping[str, list[Row]],
    state_rows: RowsByTable,
    padded: Padded = NO_PADDING,
) -> Plan:
    """The changes that make the state's rows of ``key`` equal the district's (``padded``:
    the state's padded CHAR columns, ``padded_columns``)."""
    changes: list[RowChange] = []
    upserts: dict[str, list[Row]] = {}
    deletes: dict[str, list[int]] = {}
    before: dict[str, dict[Any, Row]] = {}
    hidden: set[Normaliser] = set()  # the normalisers that hide the updates' differences
    all_hidden = True  # no insert, delete or difference that verification sees, so far
    infos = part_infos(spec)
    # Deletes first and children before the root: a removed child never blocks anything.
    for info in reversed(infos):
        id_name, link_name = info.part.id_column, info.part.link
        wanted = {r[id_name] for r in district_rows.get(info.name, ())}
        gone = sorted(
            r[id_name]
            for r in state_rows.get(info.name, ())
            if r[id_name] not in wanted and r[link_name] == key
        )
        if gone:
            deletes[info.name] = gone
            changes.extend(RowChange(info.name, rid, "delete") for rid in gone)
            all_hidden = False
    for info in infos:
        id_name = info.part.id_column
        current = {r[id_name]: r for r in state_rows.get(info.name, ())}
        for row in district_rows.get(info.name, ()):
            old = current.get(row[id_name])
            if old is None:
                cols = tuple(
                    ColumnDiff(c, row[c], None)
                    for c in info.columns
                    if c != id_name and row[c] is not None
                )
                changes.append(RowChange(info.name, row[id_name], "insert", cols))
                all_hidden = False
            else:
                differing = changed(info.columns, row, old, padded.get(info.state.name))
                if not differing:
                    continue
                cols = tuple(ColumnDiff(c, row[c], old.get(c)) for c in differing)
                for c in differing:
                    how = info.normaliser[c]
                    if normalise(row[c], how) == normalise(old.get(c), how):
                        hidden.add(how)
                    else:
                        all_hidden = False
                changes.append(RowChange(info.name, row[id_name], "update", cols))
                before.setdefault(info.name, {})[row[id_name]] = old
            upserts.setdefault(info.name, []).append(row)
    away = frozenset(hidden) if all_hidden else frozenset()
    return Plan(changes, upserts, deletes, before, away)


def changed(
    columns: Iterable[str],
    district_row: Row,
    state_row: Row,
    padded: frozenset[str] | None = None,
) -> list[str]:
    """The columns whose state value is not exactly the district's: the sync's test.

    Plain ``!=`` on the values as read: the district's converted to the state column's
    type (``district_columns``: a date is a date; text and integers come as stored), the
    state's as stored (``state_columns``), so 'Ford' differs from 'Ford\\t', '' from NULL
    and the date 2010-05-01 from the text '2010-05-01 00:00:00'. In a ``padded`` CHAR
    column trailing spaces are the column's padding, not the value ('S4' is stored as
    'S4' padded whatever the district's spaces): they are left out on both sides.
    """
    if not padded:
        return [c for c in columns if district_row[c] != state_row.get(c)]
    return [
        c
        for c in columns
        if _unpadded(district_row[c], c in padded) != _unpadded(state_row.get(c), c in padded)
    ]


def _unpadded(value: Any, padded: bool) -> Any:
    return value.rstrip(" ") if padded and isinstance(value, str) else value


_CHAR_COLUMNS = {
    "postgresql": (
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND data_type = 'character'"
    ),
    "mysql": (
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND data_type = 'char'"
    ),
}
"""The CHAR(n) columns of the vendors that pad them; SQLite keeps any text as given,
whatever the declared type."""
_CHAR_COLUMNS["mariadb"] = _CHAR_COLUMNS["mysql"]


def vendor_pads(dialect: str) -> bool:
    """Whether this vendor pads CHAR(n) columns (``padded_columns`` has anything to find)."""
    return dialect in _CHAR_COLUMNS


def padded_columns(conn: Connection) -> Padded:
    """The state's CHAR(n) columns where the vendor pads them (PostgreSQL keeps and returns
    the padding, MariaDB keeps it and strips it on read): one query of information_schema.

    The migrations make every text column VARCHAR; a state database whose columns were
    made CHAR another way is still compared as it stores values, not rewritten forever."""
    query = _CHAR_COLUMNS.get(conn.dialect.name)
    if query is None:
        return NO_PADDING
    rows = conn.execute(text(query)).all()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return {table: frozenset(columns) for table, columns in found.items()}


@cache
def _state_select_many(info: PartInfo, column: str):
    tab = info.state
    return select(*state_columns(tab, info.columns)).where(
        tab.c.district_number == bindparam("district_number"),
        tab.c[column].in_(bindparam("values", expanding=True)),
    )
