"""Create or upgrade the district and state schemas (and the state's code tables).

Two ways in:

- ``upgrade(url, side)`` / ``upgrade_engine(engine, side)``: the versioned way, through the
  Alembic migrations in ``selective_sync/migrations`` (one branch per side, each side with
  its own version table). ``selective-sync init-db`` runs it; the demo generator runs it on
  server databases. A database that already holds every table of its side but no version
  table (made by ``create_*_schema`` or an older install) is adopted: stamped at the first
  revision, then upgraded.
- ``create_district_schema`` / ``create_state_schema``: plain ``create_all`` with no
  version table, for throwaway SQLite files (tests, the embedded demo) where running the
  migrations would only cost time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy import Connection, Engine, insert, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from .db import make_engine, mask_url
from .errors import BadInput, DatabaseUnavailable, SchemaMissing
from .schema import (
    CODE_TABLES,
    LEDGER_TABLES,
    SUMMARY_TABLES,
    district_metadata,
    state_metadata,
)
from .text import first_line

Side = Literal["district", "state"]
SIDES: tuple[Side, ...] = ("district", "state")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The first revision of each branch: what a database made by create_all is stamped at.
BASELINE: dict[str, str] = {"district": "district_0001", "state": "state_0001"}
# The tables each later revision added, newest first: an unversioned database holding the
# tables up to a revision (made by an older install's create_all) is adopted at it.
ADDED_TABLES: dict[str, list[tuple[str, frozenset[str]]]] = {
    "district": [],
    "state": [("state_0003", SUMMARY_TABLES), ("state_0002", LEDGER_TABLES)],
}


def version_table(side: Side) -> str:
    return f"alembic_version_{side}"


# ------------------------------------------------------------------ unversioned (create_all)


def create_district_schema(engine: Engine) -> None:
    district_metadata.create_all(engine)


def create_state_schema(engine: Engine, districts: dict[int, str] | None = None) -> None:
    """Create the state tables, fill the code tables and register ``districts``."""
    state_metadata.create_all(engine)
    with engine.begin() as conn:
        seed_state(conn, districts)


def seed_state(conn: Connection, districts: dict[int, str] | None = None) -> None:
    """Insert the code rows the state lacks and register ``districts`` (idempotent)."""
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


# ------------------------------------------------------------------ versioned (Alembic)


@dataclass(frozen=True)
class UpgradeResult:
    """What ``upgrade`` did to one database."""

    side: Side
    url: str  # masked
    before: str | None  # revision before (None: no version table)
    after: str
    adopted: bool  # tables were there without a version table: stamped, not created
    stamped: str | None = None  # the revision the adopted tables were stamped at

    def describe(self) -> str:
        where = f"{self.side} database {self.url}"
        if self.adopted and self.before is None and self.after == self.stamped:
            return f"{where}: existing tables adopted at revision {self.after}"
        if self.adopted:
            return f"{where}: existing tables adopted, upgraded to revision {self.after}"
        if self.before is None:
            return f"{where}: schema created at revision {self.after}"
        if self.before == self.after:
            return f"{where}: already at revision {self.after}"
        return f"{where}: upgraded from revision {self.before} to {self.after}"


def alembic_config(side: Side, connection: Connection | None = None):
    """An Alembic ``Config`` for ``side``'s branch, run on ``connection`` when given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["side"] = side
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision(side: Side) -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(side))
    return script.get_revision(f"{side}@head").revision


def current_revision(engine: Engine, side: Side) -> str | None:
    """The revision ``side``'s version table records (None: not versioned)."""
    from alembic.runtime.migration import MigrationContext

    _check_side(side)
    with _connect(engine, side) as conn:
        context = MigrationContext.configure(conn, opts={"version_table": version_table(side)})
        return context.get_current_revision()


def upgrade(url: str, side: Side, *, districts: dict[int, str] | None = None) -> UpgradeResult:
    """Bring the database at ``url`` to the newest ``side`` schema; see ``upgrade_engine``."""
    _check_side(side)
    _make_sqlite_folder(url)
    engine = make_engine(url, must_exist=False)
    try:
        return upgrade_engine(engine, side, districts=districts)
    finally:
        engine.dispose()


def upgrade_engine(
    engine: Engine, side: Side, *, districts: dict[int, str] | None = None
) -> UpgradeResult:
    """Create or upgrade ``side``'s schema on ``engine`` through the Alembic migrations.

    The state side also gets its code tables filled and ``districts`` registered. On
    PostgreSQL and SQLite it all happens in one transaction; MariaDB commits each DDL
    statement (its DDL is not transactional), so an interrupted first run is finished by
    running again only after dropping the half-made tables (the error says which).
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    _check_side(side)
    masked = mask_url(str(engine.url))
    metadata = district_metadata if side == "district" else state_metadata
    with _connect(engine, side, begin=True) as conn:
        context = MigrationContext.configure(conn, opts={"version_table": version_table(side)})
        before = context.get_current_revision()
        adopted, stamped = False, None
        if before is None:
            present = set(inspect(conn).get_table_names()) & set(metadata.tables)
            stamped = adoptable_at(side, present)
            if stamped is not None:
                # Made by create_*_schema (today's, or an older install's): adopt it at the
                # revision its tables match, then migrate it.
                adopted = True
                command.stamp(alembic_config(side, conn), stamped)
            elif present:
                missing = sorted(set(metadata.tables) - present)
                raise SchemaMissing(
                    f"the {side} database {masked} holds some of its tables but no version "
                    f"table; missing: {', '.join(missing)}. Drop the partial tables or "
                    "create the missing ones, then run init-db again"
                )
        try:
            command.upgrade(alembic_config(side, conn), f"{side}@head")
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot upgrade the {side} database {masked}: {first_line(exc)}"
            ) from exc
        after = MigrationContext.configure(
            conn, opts={"version_table": version_table(side)}
        ).get_current_revision()
        if side == "state":
            seed_state(conn, districts)
    return UpgradeResult(side, masked, before, after, adopted, stamped)


def adoptable_at(side: Side, present: set[str]) -> str | None:
    """The revision whose tables are exactly ``present`` (None: no revision's)."""
    tables = set(metadata_of(side).tables)
    if present == tables:
        return head_revision(side)
    for revision, added in ADDED_TABLES[side]:
        tables -= added
        if present == tables:
            return _before(side, revision)
    return None


def _before(side: Side, revision: str) -> str:
    """The revision that ``revision`` follows (the tables before it were added)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(side))
    return script.get_revision(revision).down_revision


def metadata_of(side: Side):
    return district_metadata if side == "district" else state_metadata


@contextmanager
def _connect(engine: Engine, side: str, begin: bool = False) -> Iterator[Connection]:
    """A connection (in a transaction with ``begin``); unreachable is one clear line."""
    try:
        conn = engine.connect()
    except OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot reach the {side} database {mask_url(str(engine.url))}: {first_line(exc)}"
        ) from exc
    with conn:
        if begin:
            with conn.begin():
                yield conn
        else:
            yield conn


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise BadInput(f"side must be district or state, got {side!r}")


def _make_sqlite_folder(url: str) -> None:
    try:
        parsed = make_url(url)
    except Exception:  # make_engine reports a bad URL
        return
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
