"""Say in plain words why the state refused a key's rows.

The reason is found by asking the state with bound-parameter queries what the rows need
(the parent object, the code a column maps to, a value for a NOT NULL column, a length
that fits), never by parsing the driver's error text, so it reads the same on SQLite,
PostgreSQL and MariaDB. The error's first line is the fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, String, and_, select
from sqlalchemy.exc import SQLAlchemyError

from selective_sync.text import first_line

from ..registry import REGISTRY, ObjectSpec
from ..schema import CODE_TABLES, STATE_PREFIX
from .plan import Row, part_infos

log = logging.getLogger(__name__)

MAX_PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class Diagnosis:
    """Why a key cannot be written; ``missing_parent`` is (object, key) when that is why."""

    reason: str
    missing_parent: tuple[str, int] | None = None


def diagnose_failure(
    state_engine: Engine,
    spec: ObjectSpec,
    district_number: int,
    district_rows: Mapping[str, list[Row]],
    error: BaseException | None,
) -> Diagnosis:
    """The reason the state refused ``district_rows``; falls back to the error's first line."""
    try:
        with state_engine.connect() as conn:
            found = find_problems(conn, spec, district_number, district_rows)
    except SQLAlchemyError as exc:  # the diagnosis is a courtesy: never mask the refusal
        log.warning("could not diagnose a %s failure: %s", spec.name, first_line(exc))
        found = None
    if found is not None:
        return found
    if error is None:
        return Diagnosis("the state refused the record")
    return Diagnosis(f"the state refused the record: {first_line(error)}")


def find_problems(
    conn: Connection,
    spec: ObjectSpec,
    district_number: int,
    district_rows: Mapping[str, list[Row]],
    *,
    assume_present: Collection[tuple[str, int]] = (),
    lookups: dict | None = None,
) -> Diagnosis | None:
    """What the state would refuse in these rows, or None when nothing is found.

    Checks, in this order: foreign keys to other objects (the parent first), NOT NULL
    columns, string lengths, code-table mappings, other foreign keys. Rows of the object
    itself satisfy its internal foreign keys (they are written in the same transaction);
    ``assume_present`` lists (object, key) pairs a dry run would have synced first.
    ``lookups``, when given, caches answers about code tables and other non-object
    tables across calls (a dry run of many keys asks about the same codes).
    """
    infos = part_infos(spec)
    own = {info.state.name: info for info in infos}
    to_write = {
        info.state.name: [
            {**row, "district_number": district_number} for row in district_rows.get(info.name, ())
        ]
        for info in infos
    }
    roots = {STATE_PREFIX + s.root: s for s in REGISTRY.values()}
    parent_root = STATE_PREFIX + REGISTRY[spec.parent.object].root if spec.parent else None
    parents: list[Diagnosis] = []
    required: list[str] = []
    lengths: list[str] = []
    codes: list[str] = []
    others: list[str] = []

    for info in infos:
        rows = to_write[info.state.name]
        for column in info.state.columns:
            if column.nullable or column.name == "district_number":
                continue
            for row in rows:
                if row.get(column.name) is None:
                    required.append(f"{column.name} is required ({info.name} {_rid(info, row)})")
        for column in info.state.columns:
            limit = getattr(column.type, "length", None)
            if not isinstance(column.type, String) or not limit:
                continue
            for row in rows:
                value = row.get(column.name)
                if isinstance(value, str) and len(value) > limit:
                    lengths.append(
                        f"value too long for {column.name}: {len(value)} characters, the state "
                        f"allows {limit} ({info.name} {_rid(info, row)})"
                    )
        for fk in info.state.foreign_key_constraints:
            local = [e.parent.name for e in fk.elements]
            remote = [e.column.name for e in fk.elements]
            referred = fk.referred_table
            wanted = {
                tuple(row.get(c) for c in local)
                for row in rows
                if all(row.get(c) is not None for c in local)
            }
            if referred.name in own:
                # Satisfied by rows this same transaction writes (identity -> its person).
                wanted -= {tuple(r.get(c) for c in remote) for r in to_write[referred.name]}
            if referred.name in roots:
                obj = roots[referred.name]
                wanted = {
                    values
                    for values in wanted
                    if (obj.name, _object_key(obj, remote, values)) not in assume_present
                }
            for values in sorted(wanted, key=repr):
                if referred.name in roots or lookups is None:
                    present = _exists(conn, referred, remote, values)
                else:
                    cache_key = (referred.name, tuple(remote), values)
                    present = lookups.get(cache_key)
                    if present is None:
                        present = lookups[cache_key] = _exists(conn, referred, remote, values)
                if present:
                    continue
                named = dict(zip(local, values, strict=True))
                if referred.name == parent_root:
                    pkey = _object_key(roots[referred.name], remote, values)
                    parents.append(
                        Diagnosis(
                            f"parent {spec.parent.object} {pkey} is not at the state",
                            missing_parent=(spec.parent.object, pkey),
                        )
                    )
                elif referred.name in roots:
                    obj = roots[referred.name]
                    others.append(
                        f"{obj.name} {_object_key(obj, remote, values)} is not at the state"
                    )
                elif referred.name in CODE_TABLES and len(local) == 1:
                    codes.append(f"{local[0]} code {values[0]!r} has no state mapping")
                elif referred.name == "state_district":
                    others.append(f"district {district_number} is not registered at the state")
                else:
                    shown = ", ".join(f"{c}={v!r}" for c, v in named.items())
                    others.append(f"no {referred.name} row for {shown} at the state")

    reasons = [d.reason for d in parents] + required + lengths + codes + others
    if not reasons:
        return None
    reasons = list(dict.fromkeys(reasons))
    text = "; ".join(reasons[:MAX_PROBLEMS_SHOWN])
    if len(reasons) > MAX_PROBLEMS_SHOWN:
        text += f"; and {len(reasons) - MAX_PROBLEMS_SHOWN} more problems"
    return Diagnosis(text, parents[0].missing_parent if parents else None)


def _rid(info, row: Row) -> object:
    return row.get(info.part.id_column)


def _object_key(obj: ObjectSpec, remote: list[str], values: tuple) -> int:
    return dict(zip(remote, values, strict=True)).get(obj.key_column)


def _exists(conn: Connection, table, columns: list[str], values: tuple) -> bool:
    cond = and_(*(table.c[c] == v for c, v in zip(columns, values, strict=True)))
    return conn.execute(select(1).select_from(table).where(cond).limit(1)).first() is not None
