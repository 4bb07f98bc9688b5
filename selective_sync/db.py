"""The one engine factory, and the checks that turn driver errors into plain messages."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from .errors import BadInput, DatabaseUnavailable, SchemaMissing
from .schema import district_metadata, state_metadata
from .settings import get_settings
from .text import first_line

log = logging.getLogger(__name__)


T = TypeVar("T")

# Keys per ``IN (...)`` list: few round trips, and bound parameters per statement well under
# every vendor's limit (SQLite's is the lowest). Verification, sync and Find IDs share it.
IN_LIST_SIZE = 500


def chunked(items: Sequence[T], size: int = IN_LIST_SIZE) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (the last one shorter)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to log or show."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str, *, must_exist: bool = True) -> Engine:
    """Create an engine for ``url``. SQLite gets foreign keys on and a busy timeout.

    With ``must_exist`` a SQLite file that does not exist is an error rather than being
    silently created empty.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise BadInput(f"not a database URL: {mask_url(url)}") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if must_exist and database and database != ":memory:" and not Path(database).exists():
            raise DatabaseUnavailable(
                f"database file {database} does not exist (run `selective-sync demo` to make "
                "the demo databases, or set SELECTIVE_SYNC_DISTRICT_URL / _STATE_URL)"
            )
        engine = create_engine(
            parsed,
            connect_args={"timeout": get_settings().sqlite_busy_timeout_s},
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    try:
        return create_engine(parsed, pool_pre_ping=True, pool_recycle=1800)
    except NoSuchModuleError as exc:
        raise BadInput(f"unsupported database URL scheme in {mask_url(url)}") from exc
    except ModuleNotFoundError as exc:
        raise BadInput(f"database driver missing for {mask_url(url)}: {exc.name}") from exc


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers run beside a writer, and with synchronous=NORMAL a commit costs no
    # fsync (still crash-safe: a power cut can lose only the last commits, never corrupt).
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        log.debug("could not switch %s to WAL; keeping its journal mode", dbapi_connection)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def check_schema(engine: Engine, side: str) -> None:
    """Raise a clear error when the database is unreachable or lacks this side's tables."""
    metadata = district_metadata if side == "district" else state_metadata
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
    except OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot reach the {side} database {mask_url(str(engine.url))}: "
            f"{first_line(exc.orig or exc)}"
        ) from exc
    missing = sorted(set(metadata.tables) - present)
    if missing:
        raise SchemaMissing(
            f"the {side} database {mask_url(str(engine.url))} is missing tables: "
            + ", ".join(missing)
            + INIT_DB_HINT
        )


INIT_DB_HINT = " (`selective-sync init-db` creates or upgrades the schema)"
_SCHEMA_BEHIND = ("no such table", "no such column", "does not exist", "unknown column")


def schema_hint(exc: BaseException) -> str:
    """``INIT_DB_HINT`` when ``exc`` says a table or column is missing (a database made by
    an older version), else ""."""
    text = str(exc).lower()
    return INIT_DB_HINT if any(words in text for words in _SCHEMA_BEHIND) else ""


def check_databases(district_url: str | None = None, state_url: str | None = None) -> None:
    """``check_schema`` for each database given, each with a short-lived engine of its own."""
    for url, side in ((district_url, "district"), (state_url, "state")):
        if url is None:
            continue
        engine = make_engine(url)
        try:
            check_schema(engine, side)
        finally:
            engine.dispose()


def upsert_statement(dialect: str, table, updated: Sequence[str]):
    """``INSERT`` into ``table`` that, for a row already there (same primary key), updates
    the ``updated`` columns instead: the dialect's own upsert (ON CONFLICT DO UPDATE on
    PostgreSQL and SQLite, ON DUPLICATE KEY UPDATE on MariaDB/MySQL)."""
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in updated})
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table)
    pk = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=pk, set_={c: stmt.excluded[c] for c in updated}
    )
