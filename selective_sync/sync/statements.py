"""The SQL a key's plan is written with: upserts, keyed deletes, and checked writes.

``apply`` writes a plan made inside the key's transaction; ``apply_checked`` writes a plan
made from a batch snapshot and raises Stale when a row is not as planned on (the why is
in ``writer.KeyWriter.write_planned``).
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, update

from ..db import upsert_statement
from ..registry import ObjectSpec
from .plan import PartInfo, Plan, part_infos, stored_type


class Stale(Exception):
    """A checked write found the state other than the snapshot said (rolls the key back)."""


def apply(conn: Connection, spec: ObjectSpec, district_number: int, key: int, plan: Plan) -> None:
    """Write a plan: deletes of removed children, then upserts root first."""
    infos = part_infos(spec)
    for info in reversed(infos):
        gone = plan.deletes.get(info.name)
        if gone:
            params = {"district_number": district_number, "key": key, "ids": gone}
            conn.execute(_delete_statement(info), params)
    for info in infos:
        rows = plan.upserts.get(info.name)
        if rows:
            params = [{**row, "district_number": district_number} for row in rows]
            _upsert(conn, info.state, info.columns, params)


def _upsert(conn: Connection, table: Table, columns: tuple[str, ...], params: list[dict]) -> None:
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql", "mysql", "mariadb"):
        conn.execute(_upsert_statement(dialect, table, columns), params)
        return
    # Any other backend: update, and insert the rows that were not there.
    pk = [c.name for c in table.primary_key.columns]
    for row in params:
        cond = and_(*(table.c[c] == row[c] for c in pk))
        values = {c: row[c] for c in columns if c not in pk}
        if conn.execute(update(table).where(cond).values(values)).rowcount == 0:
            conn.execute(insert(table).values(row))


@cache
def _upsert_statement(dialect: str, table: Table, columns: tuple[str, ...]):
    pk = [c.name for c in table.primary_key.columns]
    names = ["district_number", *(c for c in columns if c != "district_number")]
    return upsert_statement(dialect, table, [c for c in names if c not in pk])


def apply_checked(
    conn: Connection, spec: ObjectSpec, district_number: int, key: int, plan: Plan
) -> None:
    """Write a snapshot's plan; raise Stale when a row is not as planned on.

    Same order as ``apply``. Updates and inserts go as one executemany per part.
    """
    infos = part_infos(spec)
    for info in reversed(infos):
        gone = plan.deletes.get(info.name)
        if gone:
            params = {"district_number": district_number, "key": key, "ids": gone}
            hit = conn.execute(_delete_statement(info), params).rowcount
            if hit != len(gone):
                raise Stale(f"{info.name}: {hit} of {len(gone)} planned deletes")
    for info in infos:
        rows = plan.upserts.get(info.name)
        if not rows:
            continue
        before = plan.before.get(info.name, {})
        id_name = info.part.id_column
        updates = [row for row in rows if row[id_name] in before]
        if updates:
            checked = _checked_columns(info)
            params = []
            for row in updates:
                old = before[row[id_name]]
                values = {f"new_{c}": row[c] for c in checked}
                values.update({f"old_{c}": old.get(c) for c in checked})
                values["old_district_number"] = district_number
                values[f"old_{id_name}"] = row[id_name]
                params.append(values)
            hit = conn.execute(_update_statement(info), params).rowcount
            if hit != len(updates):
                raise Stale(f"{info.name}: {hit} of {len(updates)} planned updates")
        if len(updates) < len(rows):
            conn.execute(
                _insert_statement(info.state),
                [
                    {**row, "district_number": district_number}
                    for row in rows
                    if row[id_name] not in before
                ],
            )


@cache
def _delete_statement(info: PartInfo):
    tab = info.state
    return delete(tab).where(
        tab.c.district_number == bindparam("district_number"),
        # Only rows this key holds: a row moved to another key meanwhile stays.
        tab.c[info.part.link] == bindparam("key"),
        tab.c[info.part.id_column].in_(bindparam("ids", expanding=True)),
    )


@cache
def _update_statement(info: PartInfo):
    """Set every copied column where the row still holds the values planned on.

    ``IS NOT DISTINCT FROM`` (SQLite ``IS``, MariaDB ``<=>``) so NULL matches NULL. The
    primary key picks the row; the rest only checks it, so the statement costs one index
    lookup on every backend. The old values bind as they were read (``stored_type``: a
    date kept as text with a time is checked as that text).
    """
    tab = info.state
    checked = _checked_columns(info)
    return (
        update(tab)
        .where(
            tab.c.district_number == bindparam("old_district_number"),
            tab.c[info.part.id_column] == bindparam(f"old_{info.part.id_column}"),
            *(
                tab.c[c].is_not_distinct_from(bindparam(f"old_{c}", type_=stored_type(tab.c[c])))
                for c in checked
            ),
        )
        .values({c: bindparam(f"new_{c}") for c in checked})
    )


@cache
def _checked_columns(info: PartInfo) -> tuple[str, ...]:
    """The copied columns outside the primary key: set, and checked, by an update."""
    pk = {c.name for c in info.state.primary_key.columns}
    return tuple(c for c in info.columns if c not in pk)


@cache
def _insert_statement(table: Table):
    return insert(table)
