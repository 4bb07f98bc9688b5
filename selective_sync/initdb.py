"""Create the district and state schemas (and the state's code tables) on any engine."""

from __future__ import annotations

from sqlalchemy import Engine, insert, select

from .schema import CODE_TABLES, district_metadata, state_metadata


def create_district_schema(engine: Engine) -> None:
    district_metadata.create_all(engine)


def create_state_schema(engine: Engine, districts: dict[int, str] | None = None) -> None:
    """Create the state tables, fill the code tables and register ``districts``."""
    state_metadata.create_all(engine)
    with engine.begin() as conn:
        for name, codes in CODE_TABLES.items():
            table = state_metadata.tables[name]
            present = set(conn.scalars(select(table.c.code)))
            rows = [{"code": c, "description": d} for c, d in codes if c not in present]
            if rows:
                conn.execute(insert(table), rows)
        if districts:
            register_districts(conn, districts)


def register_districts(conn, districts: dict[int, str]) -> None:
    table = state_metadata.tables["state_district"]
    present = set(conn.scalars(select(table.c.district_number)))
    rows = [
        {"district_number": n, "name": name} for n, name in districts.items() if n not in present
    ]
    if rows:
        conn.execute(insert(table), rows)
