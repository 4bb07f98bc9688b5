"""Copy one key (and everything its object carries) from the district to the state.

One state transaction per key: read the state's rows for (district, key), plan, and
write only what differs with dialect-aware upserts and targeted deletes. A refusal rolls
the whole key back and is diagnosed; a transient fault is raised as TransientFault so a
retry loop (Prefect's, or ``sync_key_with_retries`` here) can try again.

A batch (``sync_keys``) plans from a snapshot of the state read up front and writes that
plan with checked statements, falling back to the read-in-the-transaction path above
when the check says the snapshot is stale (see ``_Runner._sync_rows``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, insert, update
from sqlalchemy.exc import SQLAlchemyError, StatementError

from ..models import KeyOutcome, Outcome
from ..registry import REGISTRY, ObjectSpec, get_object
from .diagnose import Diagnosis, diagnose_failure, find_problems
from .faults import RetryPolicy, TransientFault, first_line, is_transient
from .plan import (
    PartInfo,
    Plan,
    RowsByTable,
    part_infos,
    plan_changes,
    read_district,
    read_state,
    read_state_many,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY = RetryPolicy()
TRANSIENT_EXHAUSTED = "transient fault after"
"""Start of the reason of a key whose retry budget ran out."""


class BatchAborted(TransientFault):
    """Several keys in a row exhausted their retries: the database is likely down.

    ``outcomes`` holds the keys finished before the abort, ``remaining`` the keys not done.
    """

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        outcomes: list[KeyOutcome] | None = None,
        remaining: list[int] | None = None,
    ):
        # Defaults keep it picklable (Prefect stores a task's exception in its state).
        super().__init__(message, cause)
        self.outcomes = outcomes or []
        self.remaining = remaining or []


# ------------------------------------------------------------------ public API


def sync_key(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec | str,
    district_number: int,
    key: int,
    *,
    dry_run: bool = False,
) -> KeyOutcome:
    """Make the state's rows of ``key`` equal the district's, in one state transaction.

    Returns SYNCED (with the RowChanges written), UNCHANGED, NOT_FOUND or FAILED (the
    state refused; nothing of the key changed; the reason says why). Raises
    TransientFault for a fault worth retrying. ``dry_run`` plans and writes nothing.
    """
    with _Runner(district_engine, state_engine, district_number, dry_run, retry=None) as runner:
        return runner.key(get_object(spec), key, False)


def sync_key_with_retries(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec | str,
    district_number: int,
    key: int,
    *,
    dry_run: bool = False,
    attempts: int = 4,
    backoff_s: float = 0.5,
    jitter: float = 0.3,
    sleep: Callable[[float], None] = time.sleep,
) -> KeyOutcome:
    """``sync_key`` retrying transient faults with exponential backoff and jitter.

    After ``attempts`` transient faults the key is FAILED with the reason
    ``transient fault after N attempts: <fault>``; ``attempts`` is recorded on the outcome.
    """
    policy = RetryPolicy(attempts=attempts, backoff_s=backoff_s, jitter=jitter, sleep=sleep)
    with _Runner(district_engine, state_engine, district_number, dry_run, retry=policy) as runner:
        return runner.key(get_object(spec), key, False)


def sync_with_dependencies(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec | str,
    district_number: int,
    key: int,
    *,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
) -> KeyOutcome:
    """Sync the key's parent objects first (recursively up the registry), then the key.

    A parent that changed is listed in ``parents_synced`` (e.g. ``PersonIdentity 10990``).
    A parent that fails makes the key FAILED with ``parent <Object> <key> could not be
    synced: <why>``. With ``retry`` None a transient fault is raised (TransientFault).
    """
    with _Runner(district_engine, state_engine, district_number, dry_run, retry=retry) as runner:
        return runner.key(get_object(spec), key, True)


def sync_keys(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec | str,
    district_number: int,
    keys: Sequence[int],
    *,
    dry_run: bool = False,
    check_dependencies: bool = False,
    retry: RetryPolicy | None = DEFAULT_RETRY,
    on_outcome: Callable[[KeyOutcome], None] | None = None,
    abort_after: int = 5,
) -> list[KeyOutcome]:
    """Sync a batch of keys in order: each its own transaction, outcome and retry budget.

    District rows (and with ``check_dependencies`` the parents' rows) and a snapshot of
    the state's rows are read up front with IN queries, 500 keys a query: a key already
    equal costs no query of its own; a key that differs is written from the snapshot's
    plan with checked statements, and read again inside its own transaction only when
    the check finds the snapshot stale. One state connection serves the whole batch
    (still one transaction per key). Each parent is synced once per batch. ``on_outcome``
    is called after every key (progress). When ``abort_after`` keys in a row exhaust their
    retries the database is taken as down and BatchAborted (a TransientFault holding the
    outcomes so far) is raised instead of failing every remaining key slowly.
    """
    spec = get_object(spec)
    with _Runner(
        district_engine, state_engine, district_number, dry_run, retry=retry, snapshot=True
    ) as runner:
        return _run_batch(runner, spec, keys, check_dependencies, on_outcome, abort_after)


def _run_batch(
    runner: _Runner,
    spec: ObjectSpec,
    keys: Sequence[int],
    check_dependencies: bool,
    on_outcome: Callable[[KeyOutcome], None] | None,
    abort_after: int,
) -> list[KeyOutcome]:
    try:
        runner.prefetch(spec, list(keys), check_dependencies)
    except _Exhausted as gave_up:
        raise TransientFault(
            f"reading the district failed after {gave_up.attempts} attempts: "
            f"{first_line(gave_up.fault)}",
            gave_up.fault,
        ) from gave_up.fault
    outcomes: list[KeyOutcome] = []
    in_a_row = 0
    for index, key in enumerate(keys):
        outcome = runner.key(spec, key, check_dependencies)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        exhausted = outcome.outcome is Outcome.FAILED and outcome.transient
        in_a_row = in_a_row + 1 if exhausted else 0
        if abort_after and in_a_row >= abort_after:
            raise BatchAborted(
                f"{in_a_row} keys in a row failed with transient faults; last: {outcome.reason}",
                runner.last_fault,
                outcomes,
                list(keys[index + 1 :]),
            )
    return outcomes


# ------------------------------------------------------------------ machinery


@dataclass
class _Result:
    outcome: KeyOutcome
    diagnosis: Diagnosis | None = None


@dataclass
class _Runner:
    """Shared state of one request: engines, options, caches of rows and parent outcomes."""

    district_engine: Engine
    state_engine: Engine
    district_number: int
    dry_run: bool
    retry: RetryPolicy | None
    snapshot: bool = False
    """Batch mode: also read the state's rows of all keys up front (see _sync_rows)."""
    district_rows: dict[tuple[str, int], RowsByTable | None] = field(default_factory=dict)
    state_rows: dict[tuple[str, int], RowsByTable] = field(default_factory=dict)
    parents: dict[tuple[str, int], KeyOutcome] = field(default_factory=dict)
    lookups: dict = field(default_factory=dict)
    in_progress: set[tuple[str, int]] = field(default_factory=set)
    last_fault: BaseException | None = None
    conn: Connection | None = None
    """The state connection this request holds (checked out on first use, returned by
    ``close``): a batch pays one pool checkout, not one per key."""

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._drop_connection(invalidate=False)

    def _state(self) -> Connection:
        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self.conn = self.state_engine.connect()
        return self.conn

    def _drop_connection(self, invalidate: bool) -> None:
        """Give the connection back; ``invalidate`` discards it (after a transient fault the
        link may be broken or the session in a bad state: the retry gets a fresh one)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if invalidate and not conn.invalidated:
                conn.invalidate()
            conn.close()
        except SQLAlchemyError as exc:  # pragma: no cover - a broken link refusing to close
            log.debug("closing the state connection failed: %s", first_line(exc))

    # -- district side

    def prefetch(self, spec: ObjectSpec, keys: list[int], with_parents: bool) -> None:
        """Read the district rows of many keys at once (and of their parents)."""
        todo = [k for k in dict.fromkeys(keys) if (spec.name, k) not in self.district_rows]
        if not todo:
            return
        found = self._retrying(
            f"reading {spec.name} keys at the district", lambda: self._read_district(spec, todo)
        )
        for k in todo:
            self.district_rows[(spec.name, k)] = found.get(k)
        if self.snapshot and found:
            state = self._retrying(
                f"reading {spec.name} keys at the state", lambda: self._read_state(spec, found)
            )
            for k, rows in state.items():
                self.state_rows[(spec.name, k)] = rows
        if with_parents and spec.parent:
            pspec = REGISTRY[spec.parent.object]
            pkeys = [
                rows[spec.root][0][spec.parent.column]
                for rows in (found.get(k) for k in todo)
                if rows and rows[spec.root][0][spec.parent.column] is not None
            ]
            self.prefetch(pspec, pkeys, True)

    def _read_district(self, spec: ObjectSpec, keys: list[int]) -> dict[int, RowsByTable]:
        try:
            with self.district_engine.connect() as conn:
                return read_district(conn, spec, keys)
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise TransientFault(
                    f"transient fault reading the district: {first_line(exc)}", exc
                ) from exc
            raise

    def _read_state(
        self, spec: ObjectSpec, found: dict[int, RowsByTable]
    ) -> dict[int, RowsByTable]:
        try:
            conn = self._state()
            with conn.begin():
                return read_state_many(conn, spec, self.district_number, found)
        except SQLAlchemyError as exc:
            if is_transient(exc):
                self._drop_connection(invalidate=True)
                raise TransientFault(
                    f"transient fault reading the state: {first_line(exc)}", exc
                ) from exc
            raise

    def _rows(self, spec: ObjectSpec, key: int) -> RowsByTable | None:
        if (spec.name, key) not in self.district_rows:
            self.prefetch(spec, [key], False)
        return self.district_rows[(spec.name, key)]

    # -- one key, with its parents

    def key(self, spec: ObjectSpec, key: int, with_parents: bool) -> KeyOutcome:
        try:
            rows = self._rows(spec, key)
        except _Exhausted as gave_up:
            return gave_up.outcome(key)
        if rows is None:
            return KeyOutcome(
                key, Outcome.NOT_FOUND, f"{spec.key_label} {key} not found at the district"
            )
        parents_synced: list[str] = []
        assume: set[tuple[str, int]] = set()
        parent_missing_at_district: str | None = None
        if with_parents and spec.parent:
            pspec = REGISTRY[spec.parent.object]
            pkey = rows[spec.root][0][spec.parent.column]
            # The guard stops a registry whose parents loop from recursing forever.
            if pkey is not None and (pspec.name, pkey) not in self.in_progress:
                label = f"{pspec.name} {pkey}"
                parent = self.parents.get((pspec.name, pkey))
                if parent is None:
                    self.in_progress.add((spec.name, key))
                    try:
                        parent = self.key(pspec, pkey, True)
                    finally:
                        self.in_progress.discard((spec.name, key))
                    self.parents[(pspec.name, pkey)] = parent
                parents_synced = list(parent.parents_synced)
                if parent.outcome is Outcome.FAILED:
                    return KeyOutcome(
                        key,
                        Outcome.FAILED,
                        f"parent {label} could not be synced: {parent.reason}",
                        attempts=0,
                        parents_synced=parents_synced,
                        transient=parent.transient,
                    )
                if parent.outcome is Outcome.SYNCED:
                    parents_synced.append(label)
                    assume.add((pspec.name, pkey))
                elif parent.outcome is Outcome.NOT_FOUND:
                    parent_missing_at_district = label
        result, attempts = self._attempt(spec, key, rows, assume)
        outcome = result.outcome
        outcome.attempts = attempts
        outcome.parents_synced = parents_synced
        if parents_synced and outcome.outcome is not Outcome.FAILED:
            outcome.reason = f"{outcome.reason}; synced first: {', '.join(parents_synced)}"
        if (
            parent_missing_at_district
            and result.diagnosis is not None
            and result.diagnosis.missing_parent is not None
        ):
            outcome.reason += f" (and {parent_missing_at_district} is not at the district either)"
        return outcome

    def _attempt(
        self, spec: ObjectSpec, key: int, rows: RowsByTable, assume: Collection[tuple[str, int]]
    ) -> tuple[_Result, int]:
        try:
            return self._retrying(
                f"{spec.name} {key}",
                lambda: self._sync_rows(spec, key, rows, assume),
                count=True,
            )
        except _Exhausted as gave_up:
            return _Result(gave_up.outcome(key)), gave_up.attempts

    def _retrying(self, what: str, fn, count: bool = False):
        attempt = 0
        while True:
            attempt += 1
            try:
                result = fn()
                return (result, attempt) if count else result
            except TransientFault as fault:
                self.last_fault = fault
                if self.retry is None:
                    raise
                if attempt >= self.retry.attempts:
                    log.warning("%s: giving up after %d attempts: %s", what, attempt, fault)
                    raise _Exhausted(fault, attempt) from fault
                pause = self.retry.delay(attempt)
                log.info("%s: %s; attempt %d again in %.2fs", what, fault, attempt + 1, pause)
                self.retry.sleep(pause)

    # -- the transaction

    def _sync_rows(
        self, spec: ObjectSpec, key: int, rows: RowsByTable, assume: Collection[tuple[str, int]]
    ) -> _Result:
        number = self.district_number
        # A batch snapshot of the state answers "already equal?" without a query per key.
        # Used once: a key given twice is read afresh the second time.
        snapshot = self.state_rows.pop((spec.name, key), None)
        if self.dry_run:
            return self._dry_run(spec, key, rows, assume, snapshot)
        plan: Plan | None = None
        if snapshot is not None:
            plan = plan_changes(spec, key, rows, snapshot)
            if not plan:
                return _Result(KeyOutcome(key, Outcome.UNCHANGED, "already equal at the state"))
        writing = False
        try:
            conn = self._state()
            if plan is not None and self._write_planned(conn, spec, key, plan):
                return _synced(spec, key, plan)
            # No snapshot, or it was stale: plan on the state as it is inside the
            # transaction, and write with upserts that cannot trip over a row that
            # appeared meanwhile.
            with conn.begin():
                plan = plan_changes(spec, key, rows, read_state(conn, spec, number, key, rows))
                if not plan:
                    return _Result(KeyOutcome(key, Outcome.UNCHANGED, "already equal at the state"))
                writing = True
                _apply(conn, spec, number, key, plan)
        except SQLAlchemyError as exc:
            if is_transient(exc):
                self._drop_connection(invalidate=True)
                raise TransientFault(
                    f"transient fault syncing {spec.name} {key}: {first_line(exc)}", exc
                ) from exc
            if not writing or not isinstance(exc, StatementError):
                raise
            diagnosis = diagnose_failure(self.state_engine, spec, number, rows, exc)
            log.debug("%s %s refused by the state: %s", spec.name, key, diagnosis.reason)
            return _Result(KeyOutcome(key, Outcome.FAILED, diagnosis.reason), diagnosis)
        return _synced(spec, key, plan)

    def _write_planned(self, conn: Connection, spec: ObjectSpec, key: int, plan: Plan) -> bool:
        """Write a plan made from the batch snapshot, in the key's transaction, if the state
        is still as the snapshot saw it; False (all rolled back) when it is not.

        Why not re-read the state here (as single keys do): in a batch the re-read cost
        more than the writes, and it never closed the race anyway, because it is not a
        locking read (SQLite's driver begins the transaction at the first write;
        PostgreSQL and MariaDB read committed rows without locking them). Instead each
        planned write checks, in the statement that writes, that its row is as planned on:

        - an update is ``UPDATE ... WHERE pk AND every copied column IS NOT DISTINCT FROM
          its snapshot value`` and must hit exactly one row per planned update;
        - an insert is a plain INSERT: a row that appeared meanwhile is a key conflict;
        - a delete is keyed by (district, link = key, id) and must hit every planned id.

        The check is made on the row's latest committed version under its write lock
        (SQLite writes one at a time; PostgreSQL re-evaluates an UPDATE's WHERE after
        waiting for a concurrent writer; InnoDB's UPDATE is a locking read; an INSERT
        racing another waits for it, then conflicts). Any miss or refusal rolls the key
        back (on PostgreSQL the failed statement's aborted transaction with it) and returns
        False; the caller then reads inside a new transaction and plans again, and a real
        refusal is diagnosed there. So reported changes are what was written, against what
        was there, and a race costs a re-read, never a wrong row.

        Two syncs over overlapping keys converge: both write only full district values
        and keyed deletes, so neither moves a row away from the district's; the loser of a
        race on a row re-plans on what the winner wrote (usually UNCHANGED). A row moved
        to another key by an earlier key of this batch makes a delete or update miss the
        same way (tested). What this does not see is a row the plan leaves alone (equal
        in the snapshot) changed afterwards by a writer other than a sync: it is trusted
        exactly as the snapshot is trusted for a key reported UNCHANGED, and the next sync
        or verification finds it.
        """
        try:
            with conn.begin():
                _apply_checked(conn, spec, self.district_number, key, plan)
            return True
        except _Stale as stale:
            log.debug("%s %s: snapshot stale (%s); reading the state again", spec.name, key, stale)
            return False
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise
            log.debug("%s %s: checked write refused (%s); planning again", spec.name, key, exc)
            return False

    def _dry_run(
        self,
        spec: ObjectSpec,
        key: int,
        rows: RowsByTable,
        assume: Collection[tuple[str, int]],
        snapshot: RowsByTable | None,
    ) -> _Result:
        try:
            conn = self._state()
            with conn.begin():
                if snapshot is None:
                    snapshot = read_state(conn, spec, self.district_number, key, rows)
                plan = plan_changes(spec, key, rows, snapshot)
                if not plan:
                    return _Result(
                        KeyOutcome(
                            key,
                            Outcome.UNCHANGED,
                            "dry run: already equal at the state; nothing written",
                        )
                    )
                problem = find_problems(
                    conn,
                    spec,
                    self.district_number,
                    rows,
                    assume_present=assume,
                    lookups=self.lookups,
                )
        except SQLAlchemyError as exc:
            if is_transient(exc):
                self._drop_connection(invalidate=True)
                raise TransientFault(
                    f"transient fault planning {spec.name} {key}: {first_line(exc)}", exc
                ) from exc
            raise
        if problem is not None:
            return _Result(
                KeyOutcome(
                    key,
                    Outcome.FAILED,
                    f"dry run: would fail: {problem.reason}",
                    changes=plan.changes,
                ),
                problem,
            )
        return _Result(
            KeyOutcome(
                key,
                Outcome.SYNCED,
                f"dry run: would change {plan.summary()}; nothing written",
                changes=plan.changes,
            )
        )


def _synced(spec: ObjectSpec, key: int, plan: Plan) -> _Result:
    summary = plan.summary()
    log.debug("%s %s synced: %s", spec.name, key, summary)
    return _Result(KeyOutcome(key, Outcome.SYNCED, f"changed {summary}", changes=plan.changes))


class _Stale(Exception):
    """A checked write found the state other than the snapshot said (rolls the key back)."""


class _Exhausted(Exception):
    def __init__(self, fault: TransientFault, attempts: int):
        super().__init__(str(fault))
        self.fault = fault
        self.attempts = attempts

    def outcome(self, key: int) -> KeyOutcome:
        return KeyOutcome(
            key,
            Outcome.FAILED,
            f"{TRANSIENT_EXHAUSTED} {self.attempts} attempts: {first_line(self.fault)}",
            attempts=self.attempts,
            transient=True,
        )


def _apply(conn: Connection, spec: ObjectSpec, district_number: int, key: int, plan: Plan) -> None:
    """Write a plan: deletes of removed children, then upserts root first."""
    infos = part_infos(spec)
    for info in reversed(infos):
        gone = plan.deletes.get(info.name)
        if gone:
            params = {"district_number": district_number, "key": key, "ids": gone}
            conn.execute(_delete_statement(info), params)
    for info in infos:
        rows = plan.upserts.get(info.name)
        if rows:
            params = [{**row, "district_number": district_number} for row in rows]
            _upsert(conn, info.state, info.columns, params)


def _upsert(conn: Connection, table: Table, columns: tuple[str, ...], params: list[dict]) -> None:
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql", "mysql", "mariadb"):
        conn.execute(_upsert_statement(dialect, table, columns), params)
        return
    # Any other backend: update, and insert the rows that were not there.
    pk = [c.name for c in table.primary_key.columns]
    for row in params:
        cond = and_(*(table.c[c] == row[c] for c in pk))
        values = {c: row[c] for c in columns if c not in pk}
        if conn.execute(update(table).where(cond).values(values)).rowcount == 0:
            conn.execute(insert(table).values(row))


@cache
def _upsert_statement(dialect: str, table: Table, columns: tuple[str, ...]):
    pk = [c.name for c in table.primary_key.columns]
    names = ["district_number", *(c for c in columns if c != "district_number")]
    updated = [c for c in names if c not in pk]
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in updated})
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table)
    return stmt.on_conflict_do_update(
        index_elements=pk, set_={c: stmt.excluded[c] for c in updated}
    )


def _apply_checked(
    conn: Connection, spec: ObjectSpec, district_number: int, key: int, plan: Plan
) -> None:
    """Write a snapshot's plan; raise _Stale when a row is not as planned on.

    Same order as ``_apply``. Updates and inserts go as one executemany per part.
    """
    infos = part_infos(spec)
    for info in reversed(infos):
        gone = plan.deletes.get(info.name)
        if gone:
            params = {"district_number": district_number, "key": key, "ids": gone}
            hit = conn.execute(_delete_statement(info), params).rowcount
            if hit != len(gone):
                raise _Stale(f"{info.name}: {hit} of {len(gone)} planned deletes")
    for info in infos:
        rows = plan.upserts.get(info.name)
        if not rows:
            continue
        before = plan.before.get(info.name, {})
        id_name = info.part.id_column
        updates = [row for row in rows if row[id_name] in before]
        if updates:
            checked = _checked_columns(info)
            params = []
            for row in updates:
                old = before[row[id_name]]
                values = {f"new_{c}": row[c] for c in checked}
                values.update({f"old_{c}": old.get(c) for c in checked})
                values["old_district_number"] = district_number
                values[f"old_{id_name}"] = row[id_name]
                params.append(values)
            hit = conn.execute(_update_statement(info), params).rowcount
            if hit != len(updates):
                raise _Stale(f"{info.name}: {hit} of {len(updates)} planned updates")
        if len(updates) < len(rows):
            conn.execute(
                _insert_statement(info.state),
                [
                    {**row, "district_number": district_number}
                    for row in rows
                    if row[id_name] not in before
                ],
            )


@cache
def _delete_statement(info: PartInfo):
    tab = info.state
    return delete(tab).where(
        tab.c.district_number == bindparam("district_number"),
        # Only rows this key holds: a row moved to another key meanwhile stays.
        tab.c[info.part.link] == bindparam("key"),
        tab.c[info.part.id_column].in_(bindparam("ids", expanding=True)),
    )


@cache
def _update_statement(info: PartInfo):
    """Set every copied column where the row still holds the values planned on.

    ``IS NOT DISTINCT FROM`` (SQLite ``IS``, MariaDB ``<=>``) so NULL matches NULL. The
    primary key picks the row; the rest only checks it, so the statement costs one index
    lookup on every backend. A value the state stores in another form than it was read
    (a date kept as text) simply fails the check and takes the re-reading path.
    """
    tab = info.state
    checked = _checked_columns(info)
    return (
        update(tab)
        .where(
            tab.c.district_number == bindparam("old_district_number"),
            tab.c[info.part.id_column] == bindparam(f"old_{info.part.id_column}"),
            *(tab.c[c].is_not_distinct_from(bindparam(f"old_{c}")) for c in checked),
        )
        .values({c: bindparam(f"new_{c}") for c in checked})
    )


@cache
def _checked_columns(info: PartInfo) -> tuple[str, ...]:
    """The copied columns outside the primary key: set, and checked, by an update."""
    pk = {c.name for c in info.state.primary_key.columns}
    return tuple(c for c in info.columns if c not in pk)


@cache
def _insert_statement(table: Table):
    return insert(table)
