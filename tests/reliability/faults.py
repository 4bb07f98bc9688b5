"""Fault injectors: other sessions that hurt a running sync the way production does.

- ``PgTerminator`` calls ``pg_terminate_backend`` on every connection to the state
  database (from the maintenance database, so never on itself) once the sync is writing;
- ``SqliteWriteLock`` holds SQLite's write lock (``BEGIN IMMEDIATE``) for longer than the
  busy timeout, a few times, once the sync has committed its first key;
- ``take_down`` / ``bring_up`` make a PostgreSQL database refuse every connection
  (``ALLOW_CONNECTIONS false`` and terminate its backends), then accept them again;
- ``RowLocks`` holds some keys' state rows (``FOR UPDATE``) so the syncs that write them
  wait, in flight, until it lets go; ``Deadlock`` also closes a lock cycle with one key's
  sync so the database kills that sync's transaction as a deadlock victim.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text

from .support import database_name, pg_admin

WRITES = ("INSERT", "UPDATE", "DELETE")


class Injector:
    """A background thread injecting faults until it has done ``times`` or is stopped."""

    def __init__(self, times: int):
        self.times = times
        self.done = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None and exc[0] is None:
            raise self.error

    def _guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # re-raised in the test thread by __exit__
            self.error = exc

    def run(self) -> None:
        raise NotImplementedError

    def pause(self, seconds: float) -> bool:
        """Sleep; False when stopped meanwhile."""
        return not self._stop.wait(seconds)


class PgTerminator(Injector):
    """Terminate every backend of the state database, ``times`` times ``interval_s`` apart,
    starting when one of them is seen writing (the fan-out is under way)."""

    def __init__(self, state_url: str, times: int = 5, interval_s: float = 0.25):
        super().__init__(times)
        self.database = database_name(state_url)
        self.state_url = state_url
        self.interval_s = interval_s
        self.terminated = 0

    def run(self) -> None:
        with pg_admin(self.state_url) as conn, conn.cursor() as cur:
            while self.done < self.times:
                cur.execute(
                    "SELECT pid, query FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.database,),
                )
                backends = cur.fetchall()
                # A write to the data, not the ledger's request row (written first).
                writing = any(
                    (q or "").lstrip().upper().startswith(WRITES) and "state_" in (q or "")
                    for _, q in backends
                )
                if not (writing or self.done):
                    if not self.pause(0.003):
                        return
                    continue
                for pid, _ in backends:
                    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    self.terminated += bool(cur.fetchone()[0])
                self.done += 1
                if not self.pause(self.interval_s):
                    return


class SqliteWriteLock(Injector):
    """Hold the state file's write lock ``hold_s`` (longer than the busy timeout), ``times``
    times ``gap_s`` apart, starting after the sync's first key is committed."""

    def __init__(self, path: Path, times: int = 3, hold_s: float = 0.8, gap_s: float = 1.0):
        super().__init__(times)
        self.path, self.hold_s, self.gap_s = path, hold_s, gap_s

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            # The first key written has its ledger row (the request's own row comes first).
            while conn.execute("SELECT 1 FROM sync_key_outcome LIMIT 1").fetchone() is None:
                if not self.pause(0.003):
                    return
            while self.done < self.times:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self.done += 1
                    time.sleep(self.hold_s)
                finally:
                    conn.execute("ROLLBACK")
                if not self.pause(self.gap_s):
                    return
        finally:
            conn.close()


def take_down(state_url: str, spare: int | None = None) -> int:
    """The state database refuses every new connection and loses its current ones
    (``spare``, a backend pid, is left for its owner to close afterwards)."""
    name = database_name(state_url)
    with pg_admin(state_url) as conn, conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> %s",
            (name, spare or 0),
        )
        return cur.fetchone()[0]


def bring_up(state_url: str) -> None:
    name = database_name(state_url)
    with pg_admin(state_url) as conn, conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


class RowLocks:
    """Another session holding write locks on the state rows of some keys (``SELECT ...
    FOR UPDATE`` on their identity rows), so the syncs that must write them wait.

    ``waiting()`` counts the connections to the state database waiting on a lock;
    ``release()`` rolls the locking transaction back and lets them go. PostgreSQL and
    MariaDB.
    """

    def __init__(self, dbs, person_ids: list[int]):
        from sqlalchemy import text

        from selective_sync.db import make_engine

        self.kind, self.name = dbs.kind, database_name(dbs.state_url)
        self.engine = make_engine(dbs.state_url)
        self.conn = self.engine.connect()
        self.tx = self.conn.begin()
        self.pid = self.conn.exec_driver_sql(
            "SELECT pg_backend_pid()" if self.kind == "postgresql" else "SELECT CONNECTION_ID()"
        ).scalar()
        ids = ", ".join(str(int(k)) for k in person_ids)
        self.conn.execute(
            text(
                "SELECT identity_id FROM state_identity WHERE district_number = 275 "
                f"AND person_id IN ({ids}) FOR UPDATE"
            )
        ).all()
        self.monitor = make_engine(dbs.state_url)

    def waiting(self) -> int:
        if self.kind == "postgresql":
            sql = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        else:
            # INNODB_TRX does not list every waiting transaction (seen under load); a write
            # that has run for 300 ms on these few rows is waiting on a lock.
            sql = (
                "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
                "AND COMMAND = 'Query' AND TIME_MS > 300 AND ID <> CONNECTION_ID() "
                "AND (INFO LIKE 'INSERT%' OR INFO LIKE 'UPDATE%' OR INFO LIKE 'DELETE%')"
            )
        with self.monitor.connect() as conn:
            return conn.execute(text(sql)).scalar()

    def sessions(self) -> str:
        """What every session of the state database is doing (for a failure message)."""
        if self.kind == "postgresql":
            sql = (
                "SELECT pid, state, wait_event_type, left(query, 60) FROM pg_stat_activity "
                "WHERE datname = current_database()"
            )
        else:
            sql = (
                "SELECT p.ID, p.COMMAND, p.STATE, t.trx_state, LEFT(p.INFO, 60) "
                "FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t "
                "ON p.ID = t.trx_mysql_thread_id WHERE p.DB = DATABASE()"
            )
        with self.monitor.connect() as conn:
            return "\n".join(str(tuple(r)) for r in conn.exec_driver_sql(sql))

    def release(self) -> None:
        if self.tx.is_active:
            try:
                self.tx.rollback()
            finally:
                self.conn.close()

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):  # the database may have been taken down
            self.release()
        self.engine.dispose()
        self.monitor.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Deadlock(RowLocks):
    """Another writer that closes a deadlock cycle with the sync of one key.

    It holds the key's identity rows (``RowLocks``); the sync of the key writes the key's
    person row first, then waits on those rows. ``close_cycle()`` then asks for the person
    row: each waits on the other. The database must pick a victim, and this session is
    made the costlier one to roll back (MariaDB's InnoDB sacrifices the transaction with
    fewer changed rows, so this one first writes rows of a scratch table; PostgreSQL
    aborts the waiter whose ``deadlock_timeout`` expires first, and each waiter checks
    once: the sync's sessions get 5 s, this one 60 s, so the sync is the one that finds the
    cycle even when a loaded machine closes it more than PostgreSQL's default 1 s after the
    sync began to wait). ``close_cycle()`` returns once the sync was rolled back as the
    victim.
    """

    SCRATCH = "reliability_scratch"
    SYNC_DEADLOCK_TIMEOUT = "5s"
    OWN_DEADLOCK_TIMEOUT = "60s"

    def __init__(self, dbs, person_id: int):
        from sqlalchemy import text

        from selective_sync.db import make_engine

        setup = make_engine(dbs.state_url)
        with setup.begin() as conn:
            if dbs.kind == "mariadb":
                conn.exec_driver_sql(f"CREATE TABLE {self.SCRATCH} (id INT PRIMARY KEY)")
            else:
                # Sessions opened from now on (the sync's) wait 5 s before checking.
                name = database_name(dbs.state_url)  # sstest_<hex>: safe in DDL as-is
                conn.exec_driver_sql(
                    f'ALTER DATABASE "{name}" SET deadlock_timeout = '
                    f"'{self.SYNC_DEADLOCK_TIMEOUT}'"
                )
        setup.dispose()
        super().__init__(dbs, [person_id])
        self.person_id = person_id
        if dbs.kind == "postgresql":
            self.conn.exec_driver_sql(f"SET deadlock_timeout = '{self.OWN_DEADLOCK_TIMEOUT}'")
        if dbs.kind == "mariadb":
            self.conn.execute(
                text(f"INSERT INTO {self.SCRATCH} (id) VALUES (:i)"),
                [{"i": i} for i in range(500)],
            )

    def close_cycle(self) -> None:
        from sqlalchemy import text

        self.conn.execute(
            text(
                "SELECT person_id FROM state_person WHERE district_number = 275 "
                "AND person_id = :p FOR UPDATE"
            ),
            {"p": self.person_id},
        ).all()

    def close(self) -> None:
        super().close()
        if self.kind == "mariadb":
            with self.engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.SCRATCH}")
            self.engine.dispose()
