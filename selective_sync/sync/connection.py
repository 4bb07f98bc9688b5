"""The state connection one request holds, and turning its transient faults into retries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from selective_sync.errors import TransientFault
from selective_sync.text import first_line

from .faults import is_transient
from .plan import NO_PADDING, Padded, padded_columns, vendor_pads

log = logging.getLogger(__name__)


class StateConnection:
    """One state connection for a whole request (checked out on first use, returned by
    ``close``): a batch pays one pool checkout, not one per key."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._conn: Connection | None = None
        self._padded: Padded | None = None

    def padded(self) -> Padded:
        """The state's padded CHAR columns (``plan.padded_columns``), read once a request;
        call it outside the key's transaction."""
        if self._padded is None and not vendor_pads(self.engine.dialect.name):
            self._padded = NO_PADDING  # SQLite: no query, no connection
        if self._padded is None:
            with self.guard("reading the state's column types"):
                conn = self.get()
                with conn.begin():
                    self._padded = padded_columns(conn)
        return self._padded

    def get(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def close(self) -> None:
        self._drop(invalidate=False)

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Raise a transient fault in the block as TransientFault ("transient fault
        <what>: ..."), discarding the connection: after a fault the link may be broken or
        the session in a bad state, so the retry gets a fresh one."""
        try:
            yield
        except SQLAlchemyError as exc:
            if is_transient(exc):
                self._drop(invalidate=True)
                raise TransientFault(f"transient fault {what}: {first_line(exc)}", exc) from exc
            raise

    def _drop(self, invalidate: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if invalidate and not conn.invalidated:
                conn.invalidate()
            conn.close()
        except SQLAlchemyError as exc:  # pragma: no cover - a broken link refusing to close
            log.debug("closing the state connection failed: %s", first_line(exc))


@contextmanager
def district_faults(what: str) -> Iterator[None]:
    """Raise a transient fault reading the district as TransientFault."""
    try:
        yield
    except SQLAlchemyError as exc:
        if is_transient(exc):
            raise TransientFault(f"transient fault {what}: {first_line(exc)}", exc) from exc
        raise
