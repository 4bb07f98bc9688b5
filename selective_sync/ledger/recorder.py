"""Recording key outcomes: inside the key's own transaction when it writes, batched when
it does not.

A key that writes rows gets its ledger row in the same transaction (``in_transaction``):
the two commit or roll back together. A key that writes nothing (unchanged, not found,
refused, given up on, a dry run) has nothing to be atomic with; its row is buffered and
inserted with others (``flush``), so recording costs one statement per many such keys.
A crash can lose buffered rows, never the row of a key whose data was written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..db import IN_LIST_SIZE, upsert_statement
from ..models import KeyOutcome
from ..schema import sync_key_outcome

log = logging.getLogger(__name__)

FLUSH_EVERY = 500
"""Buffered rows inserted in one statement (and how many wait at most)."""


@dataclass(frozen=True)
class RecordedKey:
    """One key outcome as the ledger holds it."""

    object: str
    key: int
    outcome: str
    reason: str | None
    attempts: int
    parents_synced: list[str]
    written_at: datetime | None
    recorded_at: datetime


def utcnow() -> datetime:
    """Naive UTC, as every ledger timestamp is stored (MariaDB DATETIME has no zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class KeyRecorder:
    """Records the key outcomes of one request (``run_id``) in the state database."""

    run_id: str
    attempt_offset: int = 0
    """Attempts already spent by an outer retry layer (a Prefect task's earlier runs)."""
    pending: list[dict[str, Any]] = field(default_factory=list)

    def row(self, object_name: str, outcome: KeyOutcome, written: bool) -> dict[str, Any]:
        now = utcnow()
        return {
            "run_id": self.run_id,
            "object": object_name,
            "record_key": int(outcome.key),
            "outcome": outcome.outcome.value,
            "reason": outcome.reason,
            "attempts": int(outcome.attempts) + self.attempt_offset,
            "parents_synced": "\n".join(outcome.parents_synced) or None,
            "written_at": now if written else None,
            "recorded_at": now,
        }

    def in_transaction(self, conn: Connection, object_name: str, outcome: KeyOutcome) -> None:
        """Record a key whose rows ``conn``'s open transaction is writing: one upsert, as
        a row an earlier attempt left (its commit lost on the way back) is replaced; this
        transaction is the one that wrote."""
        sql, names = _upsert_sql(type(conn.dialect), conn.dialect.name)
        row = self.row(object_name, outcome, written=True)
        # The compiled statement run on the transaction's own driver cursor (still bound
        # parameters): on the per-key path SQLAlchemy's statement handling cost more
        # than the insert itself.
        dialect = conn.dialect
        params = (
            tuple(_sqlite_value(row[n]) for n in names)
            if dialect.name == "sqlite"
            else (tuple(row[n] for n in names))
        )
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql, params)
        except dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy would raise it: the writer tells transient faults from refusals.
            raise DBAPIError.instance(
                sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            cursor.close()

    def later(self, object_name: str, outcome: KeyOutcome) -> None:
        """Record a key that wrote nothing, with the next flush."""
        self.pending.append(self.row(object_name, outcome, written=False))

    def due(self) -> bool:
        return len(self.pending) >= FLUSH_EVERY

    def flush(self, conn: Connection) -> None:
        """Insert the buffered rows through ``conn`` (not in a transaction).

        A key this request already recorded as written keeps that row: its data was
        written, and a later look that found it equal says less. Rows stay buffered
        until their chunk is committed."""
        count = len(self.pending)
        while self.pending:
            chunk = self.pending[:IN_LIST_SIZE]
            try:
                self._insert_new(conn, chunk)
            except IntegrityError:
                # Another batch of this request recorded one of these keys (a parent
                # both needed) between the look and the insert: look again.
                self._insert_new(conn, chunk)
            del self.pending[: len(chunk)]
        log.debug("ledger %s: %s key outcomes recorded", self.run_id, count)

    def _insert_new(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        with conn.begin():
            taken = _recorded(conn, self.run_id, rows)
            fresh = [r for r in rows if (r["object"], r["record_key"]) not in taken]
            if fresh:
                conn.execute(insert(sync_key_outcome), fresh)


def _sqlite_value(value: Any) -> Any:
    # SQLAlchemy's SQLite DateTime text, so the column reads back the same either way.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(value, datetime) else value


@cache
def _upsert_sql(dialect_type: type, name: str) -> tuple[str, tuple[str, ...]]:
    """The upsert compiled for a dialect with positional parameters, and their order."""
    paramstyle = "qmark" if name == "sqlite" else "format"
    compiled = _upsert(name).compile(dialect=dialect_type(paramstyle=paramstyle))
    return str(compiled), tuple(compiled.positiontup)


@cache
def _upsert(dialect: str):
    """INSERT of a key outcome that replaces the request's earlier row of the same key."""
    pk = {c.name for c in sync_key_outcome.primary_key.columns}
    updated = [c.name for c in sync_key_outcome.columns if c.name not in pk]
    return upsert_statement(dialect, sync_key_outcome, updated)


def _recorded(conn: Connection, run_id: str, rows: list[dict[str, Any]]) -> set[tuple[str, int]]:
    t = sync_key_outcome.c
    wanted = {(r["object"], r["record_key"]) for r in rows}
    found = conn.execute(
        select(t.object, t.record_key).where(
            t.run_id == run_id, tuple_(t.object, t.record_key).in_(sorted(wanted))
        )
    )
    return {(o, int(k)) for o, k in found}
