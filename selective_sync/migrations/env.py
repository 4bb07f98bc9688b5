"""Alembic environment: migrate one side (district or state) on one connection.

Run through ``selective_sync.initdb.upgrade`` (which passes the side and an open
connection in ``config.attributes``), or offline with ``-x side=...`` for a SQL script.
"""

from __future__ import annotations

from alembic import context

from selective_sync.schema import district_metadata, state_metadata

config = context.config
side = config.attributes.get("side") or context.get_x_argument(as_dictionary=True).get("side")
if side not in ("district", "state"):
    raise SystemExit("selective-sync migrations: say which side (district or state)")
metadata = district_metadata if side == "district" else state_metadata
version_table = f"alembic_version_{side}"


def include_name(name, type_, parent_names) -> bool:
    # Autogenerate compares only this side's tables: the other side (and anything else)
    # may live in the same database.
    if type_ == "table":
        return name in metadata.tables
    return True


options = {
    "target_metadata": metadata,
    "version_table": version_table,
    "include_name": include_name,
    "compare_type": True,
}

connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()
else:
    from selective_sync.db import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url"), must_exist=False)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **options)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        engine.dispose()
