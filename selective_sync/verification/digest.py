"""One digest per key over the whole object, computed by each side's own database.

An object is its compared row (``normalise.compared_select``: the root row and its
one-to-one lookups) and, for every child part the registry declares (``Part.label``, e.g.
the identity history of a person), all of that part's rows linked to the key. The
*canonical text* of a key writes, in this order:

- one token per compared column, in registry order, except that the columns of a joined
  row which is one of the key's own child rows (the current identity) are left out: the
  child section holds them (``_compared_tokens``; a joined row of another key, or none,
  is written in full after ``JOINED``);
- per child part, in registry order: one token per column of each child row (every column
  the sync copies but the link, which is the key itself, in table order, normalised as the
  sync compares it), the rows in ascending child id order, then ``PART_END``.

One mark, U+001F (``MARK``), does all the framing: a value token is the normalised value
as text with every U+001F doubled, then ``VALUE_END`` (U+001F ``;``); ``NULL`` is U+001F
``N``, so NULL never equals ''; ``PART_END`` is U+001F ``|`` and ``JOINED`` U+001F ``J``.
Read left to right, a doubled mark is a literal U+001F and a single one is followed by
``;``, ``N``, ``|`` or ``J``, which says what it is: so a value holding the mark cannot
shift into its neighbour or pass for NULL, and the text is a one-to-one map of the
normalised object (two keys have equal texts iff they are equal). Escaping costs one
``replace`` per text value, the cheapest SQL that does it on every vendor. Integers are
decimal text, dates ISO ``YYYY-MM-DD``, everything UTF-8, so the text is byte-identical on
SQLite, PostgreSQL and MariaDB/MySQL and district and state may be different vendors.

How each vendor builds the text differs, never the text: PostgreSQL groups the root rows
joined to their child rows in one pass (``_grouped_select``, for an object with one child
part that its joined rows belong to), MariaDB/MySQL and SQLite read each key's child rows by a
correlated subquery.
PostgreSQL and MariaDB/MySQL return ``md5`` of the text (lower-case hex on both); SQLite
returns the text itself (it runs in this process: hashing it in SQL would cost a Python
function call per row, and the text costs no transfer), and ``hash_text`` gives its md5
when the other side is a server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Date, Integer, Select, String, and_, case, cast, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.functions import GenericFunction

from selective_sync.models import ColumnDiff
from selective_sync.registry import Normaliser, ObjectSpec, Part
from selective_sync.schema import district_table, state_table
from selective_sync.verification.normalise import (
    Side,
    compared_select,
    normalised,
    same_district,
)

Keys = Sequence[int] | BindParameter
"""The keys a select is limited to: the keys themselves, or an expanding bound parameter that
stands for them (a statement compiled once and run for batch after batch: ``engine``)."""


def in_list(keys: Keys) -> Sequence[int] | BindParameter:
    """``keys`` as the right side of an ``IN``."""
    return keys if isinstance(keys, BindParameter) else list(keys)


MARK = "\x1f"
VALUE_END = MARK + ";"
NULL = MARK + "N"
PART_END = MARK + "|"
JOINED = MARK + "J"


# ------------------------------------------------------------------ the registry's child parts


@dataclass(frozen=True)
class ChildPart:
    """A child part as verification compares it: its columns and their normalisers."""

    part: Part
    columns: tuple[tuple[str, Normaliser], ...]

    @property
    def label(self) -> str:
        return self.part.label or self.part.table


@cache
def child_parts(spec: ObjectSpec) -> tuple[ChildPart, ...]:
    """The object's child parts (every part but the root), with the sync's columns.

    The columns and normalisers are the sync's own (``sync.plan.part_infos``), so a child
    row verification calls equal is one the sync leaves unchanged, and the other way round.
    """
    from selective_sync.sync.plan import part_infos  # late: the sync package imports much more

    return tuple(
        ChildPart(info.part, info.normalisers)
        for info in part_infos(spec)
        if info.part.table != spec.root
    )


def _table(side: Side, name: str):
    return district_table(name) if side == "district" else state_table(name)


# ------------------------------------------------------------------ SQL


class _OrderedConcat(GenericFunction):
    """Concatenation of a group's texts in ``order`` (no separator): the child section."""

    type = String()
    inherit_cache = True
    name = "ordered_concat"


@compiles(_OrderedConcat, "postgresql")
def _pg_concat(element, compiler, **kw):
    value, order = list(element.clauses)
    return (
        f"string_agg({compiler.process(value, **kw)}, '' ORDER BY {compiler.process(order, **kw)})"
    )


@compiles(_OrderedConcat, "mysql")
@compiles(_OrderedConcat, "mariadb")
def _my_concat(element, compiler, **kw):
    value, order = list(element.clauses)
    return (
        f"GROUP_CONCAT({compiler.process(value, **kw)} "
        f"ORDER BY {compiler.process(order, **kw)} SEPARATOR '')"
    )


@compiles(_OrderedConcat)
def _sqlite_concat(element, compiler, **kw):
    # SQLite before 3.44 has no ORDER BY inside an aggregate: the rows come from an
    # ordered subquery, which group_concat reads in order (_sqlite_section).
    value, _order = list(element.clauses)
    return f"group_concat({compiler.process(value, **kw)}, '')"


def _text_of(
    value: ColumnElement, normaliser: str, dialect_name: str
) -> tuple[ColumnElement, bool]:
    """A normalised value as text, and whether it may hold the mark (to escape)."""
    if normaliser == "int":
        return cast(value, String), False
    if normaliser == "date" and dialect_name != "sqlite":
        # A real DATE column: always 'YYYY-MM-DD'. SQLite keeps unparseable text as it is.
        return value, False
    return value, True


def _pieces(expr: ColumnElement, normaliser: str, dialect_name: str) -> list[ColumnElement]:
    """One value's token (see the module docstring), as a list of pieces for ``_concat``.

    The token is ``coalesce(text || VALUE_END, NULL)``. (A variadic concat of the texts and
    a CASE per value measured 20% slower on PostgreSQL than these || chains.)
    """
    if normaliser == "date" and dialect_name == "postgresql":
        # A date's text cast, 4x cheaper than to_char: 'YYYY-MM-DD' as every date style
        # starting with ISO gives it (verification's cursors set DateStyle to ISO).
        value = cast(cast(expr, Date), String)
    else:
        value = normalised(expr, normaliser, dialect_name)
    text, may_hold_marks = _text_of(value, normaliser, dialect_name)
    if may_hold_marks:
        text = func.replace(text, literal(MARK), literal(MARK + MARK), type_=String)
    return [func.coalesce(text + literal(VALUE_END), literal(NULL), type_=String)]


def token(expr: ColumnElement, normaliser: str, dialect_name: str) -> ColumnElement:
    """SQL for one value's token (see the module docstring)."""
    return _concat(_pieces(expr, normaliser, dialect_name), dialect_name)


def _concat(parts: Sequence[ColumnElement], dialect_name: str) -> ColumnElement:
    """The concatenation of ``parts``, none of which may be NULL."""
    out = parts[0]
    for part in parts[1:]:
        out = out + part  # || on SQLite/PostgreSQL, concat() on MySQL
    return out


def _row_text(child: ChildPart, table, dialect_name: str) -> ColumnElement:
    # The link column is left out: it holds the key, for every row of the section.
    pieces = [
        piece
        for name, how in child.columns
        if name != child.part.link
        for piece in _pieces(table.c[name], how, dialect_name)
    ]
    return _concat(pieces, dialect_name)


def child_section(
    child: ChildPart,
    side: Side,
    district_number: int,
    dialect_name: str,
    keys: Keys | None = None,
):
    """Subquery (k, section) for PostgreSQL objects with several child parts: per link key,
    its child rows' tokens in child id order (one GROUP BY pass over the part). Keys without
    child rows have no row here. (MariaDB/MySQL use ``_correlated_section``; on PostgreSQL
    the two measured alike.)
    """
    table = _table(side, child.part.table)
    link = table.c[child.part.link]
    conditions = []
    if side == "state":
        conditions.append(table.c.district_number == district_number)
    if keys is not None:
        conditions.append(link.in_(in_list(keys)))
    section = _OrderedConcat(_row_text(child, table, dialect_name), table.c[child.part.id_column])
    return (
        select(link.label("k"), section.label("section"))
        .where(*conditions)
        .group_by(link)
        .subquery()
    )


def _sqlite_section(
    child: ChildPart, side: Side, district_number: int, root_key: ColumnElement
) -> ColumnElement:
    """The child section of the current root row, as a correlated SQLite subquery.

    SQLite (before 3.44) has no ORDER BY inside an aggregate, and a GROUP BY over a sorted
    subquery re-sorts it by the group key only, losing the id order: so each key's rows are
    read through the part's link index, sorted by id in a subquery that group_concat reads
    in order (an ordered subquery in FROM is never flattened into an aggregate). ``id + 0``:
    ordering by the bare id made SQLite scan the id index instead, once per key.
    """
    table = _table(side, child.part.table)
    conditions = [table.c[child.part.link] == root_key]
    if side == "state":
        conditions.append(table.c.district_number == district_number)
    rows = (
        select(_row_text(child, table, "sqlite").label("t"))
        .where(*conditions)
        .order_by(table.c[child.part.id_column] + 0)
        .correlate(root_key.table)
        .subquery()
    )
    return select(_OrderedConcat(rows.c.t, rows.c.t)).scalar_subquery()


def _correlated_section(
    child: ChildPart, side: Side, district_number: int, dialect_name: str, root_key: ColumnElement
) -> ColumnElement:
    """The child section of the current root row, as a correlated MariaDB/MySQL subquery.

    Each key's child rows are read through the part's link index and concatenated by a
    GROUP_CONCAT over that key's few rows. The uncorrelated form (one GROUP BY over the
    whole part, joined to the root) made MariaDB materialise a million LONGTEXT sections
    in an on-disk temporary table before the first row (GROUP_CONCAT is LONGTEXT with
    ``group_concat_max_len`` above 512): on a 1,000,000-person state the digest query took
    28.5 s that way and 7.6 s this way, with byte-identical digests.
    """
    table = _table(side, child.part.table)
    conditions = [table.c[child.part.link] == root_key]
    if side == "state":
        conditions.append(table.c.district_number == district_number)
    section = _OrderedConcat(_row_text(child, table, dialect_name), table.c[child.part.id_column])
    return select(section).where(*conditions).correlate(root_key.table).scalar_subquery()


def _groupable(spec: ObjectSpec) -> bool:
    """Whether ``_grouped_select`` can build the object's text: one child part, and every
    joined row is a row of that part (as the current identity is one of the identities)."""
    parts = child_parts(spec)
    return len(parts) == 1 and all(
        (join.table, join.id_column) == (parts[0].part.table, parts[0].part.id_column)
        for join in spec.joins
    )


def _grouped_select(
    spec: ObjectSpec,
    side: Side,
    district_number: int,
    keys: Keys | None,
    hashed: bool,
) -> Select:
    """PostgreSQL's form of ``token_select`` for a ``_groupable`` object: the same
    canonical text, built by one GROUP BY over the root rows joined to their child rows.

    The other form joins the root to its lookup row and to a GROUP BY of the child part,
    then sorts by key: two hash joins, two sorts. Here the child rows are joined once and
    grouped by the root's primary key (so its columns may be used as they are), and the
    lookup row is only read, by a subquery, for the rare key whose lookup is not one of its
    own child rows (``_joined_tokens``).
    """
    (child,) = child_parts(spec)
    root = _table(side, spec.root)
    root_key = root.c[spec.key_column]
    rows = _table(side, child.part.table).alias("child_rows")
    link = same_district(side, rows, root, rows.c[child.part.link] == root_key)
    parts: list[ColumnElement] = []
    done: set[str] = set()
    joins = {join.table: join for join in spec.joins}
    for compared in spec.compared:
        if compared.table == spec.root:
            parts.extend(_pieces(root.c[compared.column], compared.normalise, "postgresql"))
            continue
        if compared.table in done:
            continue
        done.add(compared.table)
        parts.append(_joined_tokens(spec, side, joins[compared.table], root, rows))
    section = _OrderedConcat(
        case((rows.c[child.part.id_column].is_not(None), _row_text(child, rows, "postgresql"))),
        rows.c[child.part.id_column],
    )
    parts += [func.coalesce(section, literal(""), type_=String), literal(PART_END)]
    text = _concat(parts, "postgresql")
    digest = func.md5(text, type_=String) if hashed else text
    stmt = (
        select(root_key.label("key"), digest.label("token"))
        .select_from(root.outerjoin(rows, link))
        .group_by(*root.primary_key.columns)
    )
    if side == "state":
        stmt = stmt.where(root.c.district_number == district_number)
    if keys is not None:
        stmt = stmt.where(root_key.in_(in_list(keys)))
    return stmt


def _joined_tokens(spec: ObjectSpec, side: Side, join, root, rows):
    """The compared columns of a joined row in the grouped form: nothing when the row is one
    of the key's child rows (some child row has the joined id), else ``JOINED`` and its
    tokens, read by a subquery that runs only for such keys (NULL tokens when none)."""
    table = _table(side, join.table)
    own = [
        p
        for c in spec.compared
        if c.table == join.table
        for p in _pieces(table.c[c.column], c.normalise, "postgresql")
    ]
    nothing = [literal(NULL) for c in spec.compared if c.table == join.table]
    condition = same_district(
        side, table, root, table.c[join.id_column] == root.c[join.root_column]
    )
    row = (
        select(_concat([literal(JOINED), *own], "postgresql"))
        .where(condition)
        .correlate(root)
        .scalar_subquery()
    )
    whole = func.coalesce(row, _concat([literal(JOINED), *nothing], "postgresql"), type_=String)
    covered = func.bool_or(rows.c[join.id_column] == root.c[join.root_column])
    return case((covered, literal("")), else_=whole)


def token_select(
    spec: ObjectSpec,
    side: Side,
    district_number: int,
    dialect_name: str,
    keys: Keys | None = None,
    *,
    hashed: bool = True,
) -> Select:
    """SELECT key, token: the md5 of the key's canonical text (the text itself on SQLite,
    or everywhere with ``hashed=False``).

    Same FROM and WHERE as ``compared_select``, plus one child section per child part;
    with ``keys``, only those keys (root and children). No ORDER BY.
    """
    if dialect_name == "postgresql" and _groupable(spec):
        return _grouped_select(spec, side, district_number, keys, hashed)
    return _joined_select(spec, side, district_number, dialect_name, keys, hashed)


def _joined_select(
    spec: ObjectSpec,
    side: Side,
    district_number: int,
    dialect_name: str,
    keys: Keys | None,
    hashed: bool,
) -> Select:
    """``token_select`` as compared_select's FROM joined to one child section per part."""
    base = compared_select(spec, side, district_number, dialect_name)
    key = base.selected_columns[0]
    root_key = _table(side, spec.root).c[spec.key_column]
    parts = _compared_tokens(spec, side, dialect_name, root_key)
    from_clause = base.get_final_froms()[0]
    for child in child_parts(spec):
        if dialect_name == "sqlite":
            section = _sqlite_section(child, side, district_number, root_key)
            parts.append(func.coalesce(section, literal(""), type_=String))
        elif dialect_name in ("mysql", "mariadb"):
            section = _correlated_section(child, side, district_number, dialect_name, root_key)
            parts.append(func.coalesce(section, literal(""), type_=String))
        else:
            sub = child_section(child, side, district_number, dialect_name, keys)
            from_clause = from_clause.outerjoin(sub, sub.c.k == root_key)
            parts.append(func.coalesce(sub.c.section, literal(""), type_=String))
        parts.append(literal(PART_END))
    text = _concat(parts, dialect_name)
    if dialect_name == "sqlite" or not hashed:
        digest = text
    elif dialect_name == "postgresql":
        digest = func.md5(text, type_=String)
    else:
        digest = func.md5(_Utf8(text), type_=String)
    stmt = base.with_only_columns(key, digest.label("token")).select_from(from_clause)
    if keys is not None:
        stmt = stmt.where(root_key.in_(in_list(keys)))
    return stmt


def _compared_tokens(
    spec: ObjectSpec, side: Side, dialect_name: str, root_key: ColumnElement
) -> list[ColumnElement]:
    """Tokens of the compared row, in registry order, with one shortcut.

    A joined row that is also a child row of the key (the current identity, one of the
    person's identity rows) is in the child section already, with the same columns and
    normalisers: its compared columns are then written as nothing, which saves most of the
    row's work. A joined row that is not (a dangling or another key's identity) is written
    in full after ``JOINED``, which no value token can start with, so the text stays a
    one-to-one map of the whole object.
    """
    # The same columns compared_select normalises (its FROM holds these very tables).
    pieces = {
        c: _pieces(_table(side, c.table).c[c.column], c.normalise, dialect_name)
        for c in spec.compared
    }
    covered: dict[str, ColumnElement] = {}
    for join in spec.joins:
        for child in child_parts(spec):
            if (child.part.table, child.part.id_column) == (join.table, join.id_column):
                link = _table(side, join.table).c[child.part.link]
                covered[join.table] = link == root_key
    parts: list[ColumnElement] = []
    done: set[str] = set()
    for compared in spec.compared:
        if compared.table not in covered:
            parts.extend(pieces[compared])
        elif compared.table not in done:
            done.add(compared.table)
            own = [p for c in spec.compared if c.table == compared.table for p in pieces[c]]
            whole = _concat([literal(JOINED), *own], dialect_name)
            parts.append(case((covered[compared.table], literal("")), else_=whole))
    return parts


class _Utf8(GenericFunction):
    """MySQL's ``CONVERT(text USING utf8mb4)``: md5 then hashes UTF-8 whatever the columns'
    character set."""

    type = String()
    inherit_cache = True
    name = "to_utf8"


@compiles(_Utf8)
def _convert_utf8(element, compiler, **kw):
    (value,) = list(element.clauses)
    return f"CONVERT({compiler.process(value, **kw)} USING utf8mb4)"


def hash_text(text: str) -> str:
    """The digest a server computes for a canonical text: md5 of its UTF-8, lower-case hex."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


# ------------------------------------------------------------------ the reference encoder


def encode(values: Iterable[Any], normalisers: Iterable[str]) -> str:
    """Tokens of already-normalised values (Python's reference of the SQL above)."""
    out = []
    for value, how in zip(values, normalisers, strict=True):
        if value is None:
            out.append(NULL)
        elif how == "int":
            out.append(f"{int(value)}{VALUE_END}")
        else:
            out.append(str(value).replace(MARK, MARK + MARK) + VALUE_END)
    return "".join(out)


# ------------------------------------------------------------------ full rows of a few keys


def child_select(
    child: ChildPart, side: Side, district_number: int, dialect_name: str, keys: Keys
) -> Select:
    """SELECT link, normalised child columns… of ``keys``' child rows (by link, id)."""
    table = _table(side, child.part.table)
    link = table.c[child.part.link]
    columns = [link.label("k")]
    for name, how in child.columns:
        value = normalised(table.c[name], how, dialect_name)
        if how == "int":
            value = cast(value, Integer)
        columns.append(value.label(name))
    conditions = [link.in_(in_list(keys))]
    if side == "state":
        conditions.append(table.c.district_number == district_number)
    return select(*columns).where(and_(*conditions)).order_by(link, table.c[child.part.id_column])


def child_diffs(
    child: ChildPart,
    district: dict[Any, tuple],
    state: dict[Any, tuple],
    shown: tuple[Any, frozenset[str]] | None = None,
) -> tuple[ColumnDiff, ...]:
    """One ColumnDiff per child row that differs, labelled with the part (e.g. ``identity
    history``): the row's id on the side that has it, and for a row on both sides its
    differing columns with both values.

    ``shown`` is (child id, columns) of a row whose compared columns the compared row
    lists already (the current identity of both sides): those are not repeated here.
    """
    names = [name for name, _ in child.columns]
    noun = child.part.table
    diffs = []
    for row_id in sorted(district.keys() | state.keys()):
        d_row, s_row = district.get(row_id), state.get(row_id)
        if d_row == s_row:
            continue
        here = f"{noun} {row_id}"
        if s_row is None:
            diffs.append(ColumnDiff(child.label, here, f"no {here}"))
        elif d_row is None:
            diffs.append(ColumnDiff(child.label, f"no {here}", here))
        else:
            skip = shown[1] if shown is not None and shown[0] == row_id else frozenset()
            differing = [
                (name, d, s)
                for name, d, s in zip(names, d_row, s_row, strict=True)
                if d != s and name not in skip
            ]
            if not differing:
                continue
            diffs.append(
                ColumnDiff(
                    child.label,
                    f"{here}: " + ", ".join(f"{n}={_show(d)}" for n, d, _ in differing),
                    f"{here}: " + ", ".join(f"{n}={_show(s)}" for n, _, s in differing),
                )
            )
    return tuple(diffs)


def _show(value: Any) -> str:
    # repr: quotes strings and escapes control characters, so '' and NULL read differently.
    return "NULL" if value is None else repr(value)


__all__ = [
    "MARK",
    "NULL",
    "PART_END",
    "VALUE_END",
    "ChildPart",
    "child_diffs",
    "child_parts",
    "child_section",
    "child_select",
    "encode",
    "hash_text",
    "token",
    "token_select",
]
