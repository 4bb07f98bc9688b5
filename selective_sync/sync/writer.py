"""One key's transaction at the state: plan, write what differs, diagnose a refusal.

One attempt, no retries (``retry.Retrier`` repeats it): a transient fault is raised as
TransientFault; a refusal rolls the whole key back and is diagnosed; a dry run plans and
looks for problems, and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError, StatementError

from ..ledger import KeyRecorder
from ..models import KeyOutcome, Outcome
from ..registry import ObjectSpec
from .connection import StateConnection
from .diagnose import Diagnosis, diagnose_failure, find_problems
from .faults import is_transient
from .plan import Plan, RowsByTable, plan_changes, read_state
from .statements import Stale, apply, apply_checked

log = logging.getLogger(__name__)

ALREADY_EQUAL = "already identical at the state"
"""An UNCHANGED key's reason: every carried row is exactly the district's (``plan.changed``)."""


@dataclass
class WriteResult:
    outcome: KeyOutcome
    diagnosis: Diagnosis | None = None
    recorded: bool = False
    """The outcome (finished) is in the ledger, committed with the key's rows."""


Finish = Callable[[KeyOutcome], KeyOutcome]
"""Completes an outcome as the request reports it (attempts, parents synced first)."""


def _as_is(outcome: KeyOutcome) -> KeyOutcome:
    return outcome


@dataclass
class KeyWriter:
    """Writes keys of one district through the request's state connection."""

    state: StateConnection
    district_number: int
    dry_run: bool
    recorder: KeyRecorder | None = None
    """The request's ledger: a written key's outcome commits with its rows."""
    lookups: dict = field(default_factory=dict)
    """Code lookups cached across the keys of a dry run (``find_problems``)."""

    def write(
        self,
        spec: ObjectSpec,
        key: int,
        rows: RowsByTable,
        assume: Collection[tuple[str, int]],
        snapshot: RowsByTable | None,
        finish: Finish = _as_is,
    ) -> WriteResult:
        """Make the state's rows of ``key`` equal ``rows`` (the district's), or plan it.

        ``snapshot`` (batch mode) is the state's rows as read up front: a key it shows
        equal costs no query; a plan made from it is written with checked statements.
        ``assume`` are parents taken as present (synced just before, for a dry run).
        A key that writes is finished (``finish``) and recorded in the ledger inside its
        transaction; the result then says ``recorded``.
        """
        if self.dry_run:
            return self._dry_run(spec, key, rows, assume, snapshot)
        padded = self.state.padded()
        plan: Plan | None = None
        if snapshot is not None:
            plan = plan_changes(spec, key, rows, snapshot, padded)
            if not plan:
                return WriteResult(KeyOutcome(key, Outcome.UNCHANGED, ALREADY_EQUAL))
        writing = False
        with self.state.guard(f"syncing {spec.name} {key}"):
            try:
                conn = self.state.get()
                if plan is not None:
                    done = self.write_planned(conn, spec, key, plan, finish)
                    if done is not None:
                        return done
                # No snapshot, or it was stale: plan on the state as it is inside the
                # transaction, and write with upserts that cannot trip over a row that
                # appeared meanwhile.
                with conn.begin():
                    state_rows = read_state(conn, spec, self.district_number, key, rows)
                    plan = plan_changes(spec, key, rows, state_rows, padded)
                    if not plan:
                        return WriteResult(KeyOutcome(key, Outcome.UNCHANGED, ALREADY_EQUAL))
                    writing = True
                    apply(conn, spec, self.district_number, key, plan)
                    done = self._record(conn, spec, key, plan, finish)
            except SQLAlchemyError as exc:
                if is_transient(exc) or not writing or not isinstance(exc, StatementError):
                    raise
                return self._refused(spec, key, rows, exc)
        return done

    def _record(
        self, conn: Connection, spec: ObjectSpec, key: int, plan: Plan, finish: Finish
    ) -> WriteResult:
        """The key's SYNCED result, recorded in the ledger by ``conn``'s open transaction."""
        result = _synced(spec, key, plan)
        if self.recorder is None:
            return result
        result.outcome = finish(result.outcome)
        self.recorder.in_transaction(conn, spec.name, result.outcome)
        result.recorded = True
        return result

    def write_planned(
        self, conn: Connection, spec: ObjectSpec, key: int, plan: Plan, finish: Finish = _as_is
    ) -> WriteResult | None:
        """Write a plan made from the batch snapshot, in the key's transaction, if the state
        is still as the snapshot saw it; None (all rolled back) when it is not.

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
        None; the caller then reads inside a new transaction and plans again, and a real
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
                apply_checked(conn, spec, self.district_number, key, plan)
                return self._record(conn, spec, key, plan, finish)
        except Stale as stale:
            log.debug("%s %s: snapshot stale (%s); reading the state again", spec.name, key, stale)
            return None
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise
            log.debug("%s %s: checked write refused (%s); planning again", spec.name, key, exc)
            return None

    def _refused(
        self, spec: ObjectSpec, key: int, rows: RowsByTable, exc: StatementError
    ) -> WriteResult:
        diagnosis = diagnose_failure(self.state.engine, spec, self.district_number, rows, exc)
        log.debug("%s %s refused by the state: %s", spec.name, key, diagnosis.reason)
        return WriteResult(KeyOutcome(key, Outcome.FAILED, diagnosis.reason), diagnosis)

    def _dry_run(
        self,
        spec: ObjectSpec,
        key: int,
        rows: RowsByTable,
        assume: Collection[tuple[str, int]],
        snapshot: RowsByTable | None,
    ) -> WriteResult:
        padded = self.state.padded()
        with self.state.guard(f"planning {spec.name} {key}"):
            conn = self.state.get()
            with conn.begin():
                if snapshot is None:
                    snapshot = read_state(conn, spec, self.district_number, key, rows)
                plan = plan_changes(spec, key, rows, snapshot, padded)
                if not plan:
                    return WriteResult(
                        KeyOutcome(
                            key,
                            Outcome.UNCHANGED,
                            f"dry run: {ALREADY_EQUAL}; nothing written",
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
        if problem is not None:
            return WriteResult(
                KeyOutcome(
                    key,
                    Outcome.FAILED,
                    f"dry run: would fail: {problem.reason}",
                    changes=plan.changes,
                ),
                problem,
            )
        return WriteResult(
            KeyOutcome(
                key,
                Outcome.SYNCED,
                f"dry run: would change {plan.summary()}; nothing written",
                changes=plan.changes,
            )
        )


def _synced(spec: ObjectSpec, key: int, plan: Plan) -> WriteResult:
    summary = plan.summary()
    log.debug("%s %s synced: %s", spec.name, key, summary)
    return WriteResult(KeyOutcome(key, Outcome.SYNCED, f"changed {summary}", changes=plan.changes))
