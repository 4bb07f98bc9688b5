"""The compared row of an object, normalised in SQL for SQLite, PostgreSQL and MariaDB/MySQL.

Each side's database does the normalisation the registry declares (``registry.Normaliser``;
``sync.plan.normalise`` is the same rules in Python: the sync writes whatever is not exactly
the district's, and names a difference these rules hide as such), so equal records
come back as identical Python tuples whatever the engine, and verification compares tuples
with plain ``==``. Every normalised expression is typed ``String``/``Integer`` explicitly so
that no SQLAlchemy result processor rewrites the values (rows are read from raw DBAPI
cursors anyway; the types matter for callers that execute the select through SQLAlchemy).

Full scans do not read these rows: each side hashes its whole objects (``digest``) and only
the keys whose digests differ are read here, for their column differences.
"""

from __future__ import annotations

from sqlalchemy import (
    Date,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from selective_sync.registry import TRIM_CHARS, ObjectSpec
from selective_sync.schema import district_table, state_table

Side = str  # "district" or "state"


def normalised(expr: ColumnElement, normaliser: str, dialect_name: str) -> ColumnElement:
    """``expr`` normalised as the registry declares, in ``dialect_name``'s SQL.

    ``trim`` strips ``TRIM_CHARS`` (space, TAB, CR, LF) at both ends; NULL stays NULL and
    '' stays '', which differ. ``date`` yields the calendar date as 'YYYY-MM-DD' text on
    every engine.
    """
    if normaliser == "exact":
        return expr
    if normaliser == "trim":
        return _trimmed(expr, dialect_name)
    if normaliser == "int":
        # SQLAlchemy renders CAST(x AS SIGNED INTEGER) on MySQL, CAST(x AS INTEGER) elsewhere.
        return cast(expr, Integer)
    if normaliser == "date":
        return _date_text(expr, dialect_name)
    raise ValueError(f"unknown normaliser {normaliser!r}")


_TRIM_CODES = tuple(ord(c) for c in TRIM_CHARS)
_TRIM_PATTERN = f"^[{TRIM_CHARS}]+|[{TRIM_CHARS}]+\\z"
"""PCRE for MariaDB/MySQL: a run of TRIM_CHARS at the start, or at the very end (\\z:
``$`` would also match before a final LF)."""


def _trimmed(expr: ColumnElement, dialect_name: str) -> ColumnElement:
    chars = literal(TRIM_CHARS, String)
    if dialect_name == "sqlite":
        return func.trim(expr, chars, type_=String)
    if dialect_name == "postgresql":
        return func.btrim(expr, chars, type_=String)
    # MySQL's TRIM strips one given string, not a set of characters: a regular expression
    # does, and costs a lot, so it runs only for the rare value that starts or ends with one
    # of the characters (ASCII() is the first byte; 0 for '', NULL for NULL).
    edge = or_(
        func.ascii(expr).in_(_TRIM_CODES),
        func.ascii(func.right(expr, 1)).in_(_TRIM_CODES),
    )
    stripped = func.regexp_replace(expr, literal(_TRIM_PATTERN, String), literal("", String))
    return type_coerce(case((edge, stripped), else_=expr), String)


def _date_text(expr: ColumnElement, dialect_name: str) -> ColumnElement:
    if dialect_name == "sqlite":
        # SQLite stores dates as text: text that starts with a valid 'YYYY-MM-DD' (date()
        # gives it back unchanged) compares as that date, so '2010-05-01 00:00:00' and
        # '2010-05-01T00:00:00' equal '2010-05-01'. Any other text keeps its raw value, so
        # garbage shows as a difference instead of silently equalling NULL. The Python
        # side (sync.plan.normalise) applies the same rule.
        head = func.substr(expr, 1, 10, type_=String)
        return case((func.date(head, type_=String) == head, head), else_=cast(expr, String))
    if dialect_name == "postgresql":
        # to_char, not a text cast: a cast would follow the session's DateStyle.
        return func.to_char(cast(expr, Date), literal_column("'YYYY-MM-DD'"), type_=String)
    # MySQL/MariaDB render a DATE as 'YYYY-MM-DD' whatever the session settings; the
    # inner cast drops any time part of a DATETIME.
    return cast(cast(expr, Date), String)


def compared_labels(spec: ObjectSpec) -> tuple[str, ...]:
    """Names of the compared columns, in the order they follow the key in a compared row."""
    return tuple(c.label for c in spec.compared)


def compared_select(
    spec: ObjectSpec, side: Side, district_number: int, dialect_name: str
) -> Select:
    """SELECT key, normalised compared columns… for one side (no ORDER BY, no key filter).

    The root table is joined one-to-one (LEFT OUTER, so a root row with a dangling lookup
    still counts) to the registry's ``joins``. On the state side every table is filtered or
    joined on ``district_number`` so another district's rows can never appear.
    """
    if side not in ("district", "state"):
        raise ValueError(f"side must be 'district' or 'state', not {side!r}")
    lookup = district_table if side == "district" else state_table
    root = lookup(spec.root)
    tables = {spec.root: root}
    from_clause = root
    for join in spec.joins:
        target = lookup(join.table)
        condition = target.c[join.id_column] == root.c[join.root_column]
        condition = same_district(side, target, root, condition)
        from_clause = from_clause.outerjoin(target, condition)
        tables[join.table] = target
    columns = [root.c[spec.key_column].label("key")]
    for compared in spec.compared:
        expr = normalised(
            tables[compared.table].c[compared.column], compared.normalise, dialect_name
        )
        columns.append(expr.label(compared.label))
    stmt = select(*columns).select_from(from_clause)
    if side == "state":
        stmt = stmt.where(root.c.district_number == district_number)
    return stmt


def same_district(side: Side, target, root, condition):
    """``condition`` joining ``target`` to ``root``; on the state side, which holds every
    district's rows, also within one district."""
    if side == "state":
        return and_(target.c.district_number == root.c.district_number, condition)
    return condition


def key_column(spec: ObjectSpec, side: Side):
    """The root table's key column on ``side`` (for ORDER BY and IN filters)."""
    lookup = district_table if side == "district" else state_table
    return lookup(spec.root).c[spec.key_column]
