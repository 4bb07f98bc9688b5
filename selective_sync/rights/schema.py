"""The rights store's tables, and the one-time move of global grants to "all districts".

Three tables beside each other in the store's database: ``selective_sync_grants`` (a
user's letters on one district, or on all districts as district 0), the audit of every
change (``selective_sync_rights_audit``) and the refusal audit
(``selective_sync_refusals``). They are created on first use, like the ledger's are not:
the store may be a database of its own (``SELECTIVE_SYNC_RIGHTS_URL``) that no migration
tool manages.

Before rights were scoped to districts a user's letters were global, in
``selective_sync_rights`` (one row per user) and the audit had no district. ``migrate``
moves them on the first use of a store (any command or flow): each global grant becomes
the same letters on all districts (granted by and at as before), one ``migrate`` audit row
records each, the existing audit rows are kept and marked as all-district changes, and the
old table is dropped. It is idempotent and safe to run from two processes at once.
"""

from __future__ import annotations

import logging

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects import mysql

from .model import ALL_DISTRICTS, MAX_ASKED_LEN, MAX_USER_LEN

log = logging.getLogger(__name__)

MIGRATION_ACTOR = "(migration)"
"""The actor named by the audit rows of the move to district-scoped grants."""

# User names compare case-sensitively everywhere; MariaDB/MySQL default collations are
# case-insensitive, so the name columns get a binary collation there.
_UserName = String(MAX_USER_LEN).with_variant(
    mysql.VARCHAR(MAX_USER_LEN, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

rights_metadata = MetaData()

grants_table = Table(
    "selective_sync_grants",
    rights_metadata,
    Column("user_name", _UserName, primary_key=True),
    # ALL_DISTRICTS (0): every district; otherwise a district number.
    Column("district", Integer, primary_key=True, autoincrement=False),
    Column("rights", String(3), nullable=False),
    Column("granted_by", _UserName, nullable=False),
    # Naive UTC: the one datetime form SQLite, PostgreSQL and MariaDB all store alike.
    Column("granted_at", DateTime(), nullable=False),
)

audit_table = Table(
    "selective_sync_rights_audit",
    rights_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(), nullable=False),
    Column("actor", _UserName, nullable=False),
    Column("action", String(16), nullable=False),
    Column("user_name", _UserName, nullable=False),
    Column("old_rights", String(3)),
    Column("new_rights", String(3)),
    # Nullable only because the column was added to an existing table; migrate fills it.
    Column("district", Integer),
)

refusals_table = Table(
    "selective_sync_refusals",
    rights_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(), nullable=False),
    Column("user_name", _UserName, nullable=False),
    Column("entry_point", String(64), nullable=False),
    Column("right_letter", String(1), nullable=False),
    Column("district", Integer, nullable=False),
    Column("asked", String(MAX_ASKED_LEN), nullable=False),
    Column("message", String(1000), nullable=False),
)

# The table global grants lived in, read only to move its rows (never created again).
legacy_rights_table = Table(
    "selective_sync_rights",
    MetaData(),
    Column("user_name", _UserName, primary_key=True),
    Column("rights", String(3), nullable=False),
    Column("granted_by", _UserName, nullable=False),
    Column("granted_at", DateTime(), nullable=False),
)


def needs_migration(engine: Engine) -> bool:
    """Whether the store still has global grants or an audit without districts."""
    inspector = inspect(engine)
    names = set(inspector.get_table_names())
    if legacy_rights_table.name in names:
        return True
    if audit_table.name in names:
        columns = {c["name"] for c in inspector.get_columns(audit_table.name)}
        return "district" not in columns
    return False


def migrate(conn: Connection, now) -> int:
    """Move global grants to all districts (see the module docstring); the tables of
    ``rights_metadata`` exist. Returns how many grants were moved."""
    inspector = inspect(conn)
    names = set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns(audit_table.name)}
    if "district" not in columns:
        # Alembic (the schema's migration tool) writes the ALTER TABLE each database takes.
        from alembic.operations import Operations
        from alembic.runtime.migration import MigrationContext

        Operations(MigrationContext.configure(conn)).add_column(
            audit_table.name, Column("district", Integer)
        )
    # Every change recorded before districts was a change of global rights.
    conn.execute(
        update(audit_table).where(audit_table.c.district.is_(None)).values(district=ALL_DISTRICTS)
    )
    if legacy_rights_table.name not in names:
        return 0
    moved = 0
    present = set(
        conn.scalars(
            select(grants_table.c.user_name).where(grants_table.c.district == ALL_DISTRICTS)
        )
    )
    rows = conn.execute(select(legacy_rights_table).order_by(legacy_rights_table.c.user_name))
    for row in rows.all():
        if row.user_name in present:
            continue  # moved by an earlier, interrupted run (or a concurrent one)
        conn.execute(
            insert(grants_table).values(
                user_name=row.user_name,
                district=ALL_DISTRICTS,
                rights=row.rights,
                granted_by=row.granted_by,
                granted_at=row.granted_at,
            )
        )
        conn.execute(
            insert(audit_table).values(
                at=now,
                actor=MIGRATION_ACTOR,
                action="migrate",
                user_name=row.user_name,
                old_rights=row.rights,
                new_rights=row.rights,
                district=ALL_DISTRICTS,
            )
        )
        moved += 1
    # Last: MariaDB commits before DDL, so an interrupted run keeps the old table and the
    # next one finishes (rows already moved are skipped above).
    legacy_rights_table.drop(conn)
    log.warning(
        "rights store: %d global grant(s) moved to all districts; the audit keeps their history",
        moved,
    )
    return moved
