"""The per-district lock: a district's manual syncs and its nightly reconciliation never overlap.

The lock lives in the state database, so it holds between processes and machines and needs
no Prefect server (a plain CLI run takes it too):

- PostgreSQL: a session advisory lock on ``(NAMESPACE, district)``, shared or exclusive;
- MariaDB/MySQL: named ``GET_LOCK`` locks (a gate and slots, see ``_mariadb_lock``);
- SQLite: ``flock`` on a file beside the state database (SQLite has one machine anyway).

Each is held by an open connection (or file descriptor) and released when it closes, so a
process that dies, even by SIGKILL, never leaves a stale lock behind. The lock is
re-entrant within one context: a district's reconciliation (``reconcile_run``) holds it and
the selective syncs it runs enter it again instead of waiting for themselves.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from .db import mask_url
from .errors import DatabaseUnavailable, DistrictBusy
from .text import first_line

log = logging.getLogger(__name__)

NAMESPACE = 0x5E1EC7  # first key of PostgreSQL's two-key advisory locks: "selective-sync"
POLL_S = 0.25
MARIADB_SLOTS = 16  # selective syncs of one district that may run at once on MariaDB

# The locks this context (a flow, a district's reconciliation and the syncs it runs) holds.
_held: ContextVar[frozenset[tuple[str, int]]] = ContextVar("district_locks", default=frozenset())


def lock_name(district: int) -> str:
    return f"selective-sync-district-{int(district)}"


@contextlib.contextmanager
def district_lock(
    state_url: str, district: int, timeout_s: float, holder: str, *, exclusive: bool
) -> Iterator[None]:
    """Hold the district's lock for the block; wait up to ``timeout_s`` for it.

    Selective syncs take it shared (two syncs of one district may overlap: their keys are
    written row by row, each correct on its own); a district's reconciliation takes it
    exclusive, so it waits for the syncs in progress and they wait for it. ``holder`` says
    who waits (logged, and named in the DistrictBusy error).
    """
    key = (state_url, int(district))
    if key in _held.get():
        yield  # this flow holds it already (a reconciliation's own syncs)
        return
    started = time.monotonic()
    backend = make_url(state_url).get_backend_name()
    acquire = {"sqlite": _file_lock, "postgresql": _postgres_lock}.get(backend, _mariadb_lock)
    with acquire(state_url, int(district), timeout_s, holder, exclusive):
        waited = time.monotonic() - started
        if waited >= POLL_S:
            log.info("%s waited %.1f s for the lock of district %s", holder, waited, district)
        token = _held.set(_held.get() | {key})
        try:
            yield
        finally:
            _held.reset(token)


def _busy(district: int, timeout_s: float, holder: str) -> DistrictBusy:
    return DistrictBusy(
        f"{holder}: district {district} is being synced or reconciled by another run, "
        f"which still held its lock after {timeout_s:g} s; try again when it has finished "
        "(SELECTIVE_SYNC_DISTRICT_LOCK_TIMEOUT_S sets the wait)"
    )


def _wait(try_once, deadline: float, district: int, timeout_s: float, holder: str) -> None:
    logged = False
    while not try_once():
        if time.monotonic() >= deadline:
            raise _busy(district, timeout_s, holder)
        if not logged:
            log.info("%s: district %s is busy; waiting for its lock", holder, district)
            logged = True
        time.sleep(POLL_S)


@contextlib.contextmanager
def _connection(url: str, district: int) -> Iterator[Connection]:
    # NullPool: the connection really closes afterwards, so a session lock can never
    # outlive the block inside a pooled connection.
    engine = create_engine(url, poolclass=NullPool)
    try:
        try:
            conn = engine.connect()
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot reach the state database {mask_url(url)} for the lock of district "
                f"{district}: {first_line(exc)}"
            ) from exc
        with conn:
            yield conn
    finally:
        engine.dispose()


def _scalar(conn: Connection, sql: str, **params) -> object:
    value = conn.execute(text(sql), params).scalar()
    conn.commit()  # no transaction stays open while the lock is held
    return value


@contextlib.contextmanager
def _postgres_lock(
    url: str, district: int, timeout_s: float, holder: str, exclusive: bool
) -> Iterator[None]:
    mode = "" if exclusive else "_shared"
    keys = "CAST(:ns AS integer), CAST(:district AS integer)"
    with _connection(url, district) as conn:
        _wait(
            lambda: bool(
                _scalar(
                    conn,
                    f"SELECT pg_try_advisory_lock{mode}({keys})",
                    ns=NAMESPACE,
                    district=district,
                )
            ),
            time.monotonic() + timeout_s,
            district,
            timeout_s,
            holder,
        )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                _scalar(
                    conn,
                    f"SELECT pg_advisory_unlock{mode}({keys})",
                    ns=NAMESPACE,
                    district=district,
                )


@contextlib.contextmanager
def _mariadb_lock(
    url: str, district: int, timeout_s: float, holder: str, exclusive: bool
) -> Iterator[None]:
    """GET_LOCK is exclusive only: a gate lock and ``MARIADB_SLOTS`` slot locks make a
    shared/exclusive pair. A sync passes the gate and keeps one free slot; a
    reconciliation keeps the gate (no new sync starts) and waits until it holds every slot
    (every sync in progress has finished)."""
    name = lock_name(district)
    slots = [f"{name}-{i}" for i in range(MARIADB_SLOTS)]
    deadline = time.monotonic() + timeout_s

    def get(lock: str) -> bool:
        return _scalar(conn, "SELECT GET_LOCK(:name, 0)", name=lock) == 1

    def release(lock: str) -> None:
        with contextlib.suppress(Exception):
            _scalar(conn, "SELECT RELEASE_LOCK(:name)", name=lock)

    with _connection(url, district) as conn:
        _wait(lambda: get(name), deadline, district, timeout_s, holder)
        held: list[str] = []
        try:
            if exclusive:
                pending = list(slots)

                def all_slots() -> bool:
                    for slot in list(pending):
                        if get(slot):
                            pending.remove(slot)
                            held.append(slot)
                    return not pending

                _wait(all_slots, deadline, district, timeout_s, holder)
            else:

                def one_slot() -> bool:
                    free = next((s for s in slots if get(s)), None)
                    if free:
                        held.append(free)
                    return free is not None

                _wait(one_slot, deadline, district, timeout_s, holder)
                release(name)  # the gate: other syncs may start beside this one
        except BaseException:
            for lock in held:
                release(lock)
            release(name)
            raise
        try:
            yield
        finally:
            for lock in held:
                release(lock)
            if exclusive:
                release(name)


@contextlib.contextmanager
def _file_lock(
    url: str, district: int, timeout_s: float, holder: str, exclusive: bool
) -> Iterator[None]:
    database = make_url(url).database or ""
    if not database or database == ":memory:":
        yield  # one process owns an in-memory database: nothing to share a lock with
        return
    path = Path(database).expanduser().resolve()
    lock_path = path.with_name(f"{path.name}.{lock_name(district)}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:

        def try_once() -> bool:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        _wait(try_once, time.monotonic() + timeout_s, district, timeout_s, holder)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
