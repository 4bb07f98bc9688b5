"""One key with its retries and, with dependencies checked, its parents synced first."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from selective_sync.errors import TransientFault

from ..models import KeyOutcome, Outcome
from ..registry import REGISTRY, ObjectSpec
from .plan import RowsByTable
from .planner import Planner
from .retry import Exhausted, Retrier
from .writer import Finish, KeyWriter, WriteResult

log = logging.getLogger(__name__)


def parent_label(name: str, key: int) -> str:
    """How an outcome names a parent synced first (``parents_synced``): "PersonIdentity 12"."""
    return f"{name} {key}"


def parents_written(outcomes: Iterable[KeyOutcome]) -> dict[str, set[int]]:
    """The parents the outcomes say were synced first, by object."""
    found: dict[str, set[int]] = defaultdict(set)
    for outcome in outcomes:
        for label in outcome.parents_synced:
            name, _, key = label.rpartition(" ")
            try:
                found[name].add(int(key))
            except ValueError:  # not a label of parent_label's
                continue
    return dict(found)


@dataclass
class KeySyncer:
    """Syncs the keys of one request: rows from the planner, writes by the writer, each
    attempt under the retrier; each parent is synced once per request."""

    planner: Planner
    writer: KeyWriter
    retrier: Retrier
    parents: dict[tuple[str, int], KeyOutcome] = field(default_factory=dict)
    in_progress: set[tuple[str, int]] = field(default_factory=set)

    def key(self, spec: ObjectSpec, key: int, with_parents: bool) -> KeyOutcome:
        """The key's outcome, its parents (recursively up the registry) synced first when
        ``with_parents``; ``outcome.attempts`` is what the key itself took."""
        try:
            rows = self.planner.district(spec, key)
        except Exhausted as gave_up:
            return self._later(spec, gave_up.outcome(key))
        if rows is None:
            return self._later(
                spec,
                KeyOutcome(
                    key, Outcome.NOT_FOUND, f"{spec.key_label} {key} not found at the district"
                ),
            )
        parents_synced: list[str] = []
        assume: set[tuple[str, int]] = set()
        parent_missing_at_district: str | None = None
        parent = self._parent(spec, key, rows) if with_parents and spec.parent else None
        if parent is not None:
            label, pid, outcome = parent
            parents_synced = list(outcome.parents_synced)
            if outcome.outcome is Outcome.FAILED:
                return self._later(
                    spec,
                    KeyOutcome(
                        key,
                        Outcome.FAILED,
                        f"parent {label} could not be synced: {outcome.reason}",
                        attempts=0,
                        parents_synced=parents_synced,
                        transient=outcome.transient,
                    ),
                )
            if outcome.outcome is Outcome.SYNCED:
                parents_synced.append(label)
                assume.add(pid)
            elif outcome.outcome is Outcome.NOT_FOUND:
                parent_missing_at_district = label

        def finish(outcome: KeyOutcome, attempts: int | None = None) -> KeyOutcome:
            outcome.attempts = self.retrier.attempt if attempts is None else attempts
            outcome.parents_synced = parents_synced
            if parents_synced and outcome.outcome is not Outcome.FAILED:
                outcome.reason = f"{outcome.reason}; synced first: {', '.join(parents_synced)}"
            return outcome

        result, attempts = self._attempt(spec, key, rows, assume, finish)
        if result.recorded:
            return result.outcome
        outcome = finish(result.outcome, attempts)
        if (
            parent_missing_at_district
            and result.diagnosis is not None
            and result.diagnosis.missing_parent is not None
        ):
            outcome.reason += f" (and {parent_missing_at_district} is not at the district either)"
        return self._later(spec, outcome)

    def flush_ledger(self, due_only: bool = False) -> None:
        """Write the ledger rows buffered so far (with ``due_only``, only once enough wait).

        A ledger that cannot be written is logged, not raised: those keys wrote nothing,
        and the request's end records every key's outcome again (``finish_request``)."""
        recorder = self.writer.recorder
        if recorder is None or not recorder.pending or (due_only and not recorder.due()):
            return
        state = self.writer.state
        try:
            with state.guard("recording key outcomes in the ledger"):
                recorder.flush(state.get())
        except (TransientFault, SQLAlchemyError) as exc:
            log.warning("The ledger missed %s key outcomes: %s", len(recorder.pending), exc)
            recorder.pending.clear()

    def _later(self, spec: ObjectSpec, outcome: KeyOutcome) -> KeyOutcome:
        """Record an outcome that wrote nothing with the ledger's next flush."""
        if self.writer.recorder is not None:
            self.writer.recorder.later(spec.name, outcome)
        return outcome

    def _parent(
        self, spec: ObjectSpec, key: int, rows: RowsByTable
    ) -> tuple[str, tuple[str, int], KeyOutcome] | None:
        """``(label, (object, key), outcome)`` of the key's parent, synced now unless it
        was already in this request."""
        pspec = REGISTRY[spec.parent.object]
        pkey = rows[spec.root][0][spec.parent.column]
        # The guard stops a registry whose parents loop from recursing forever.
        if pkey is None or (pspec.name, pkey) in self.in_progress:
            return None
        outcome = self.parents.get((pspec.name, pkey))
        if outcome is None:
            self.in_progress.add((spec.name, key))
            try:
                outcome = self.key(pspec, pkey, True)
            finally:
                self.in_progress.discard((spec.name, key))
            self.parents[(pspec.name, pkey)] = outcome
        return parent_label(pspec.name, pkey), (pspec.name, pkey), outcome

    def _attempt(
        self,
        spec: ObjectSpec,
        key: int,
        rows: RowsByTable,
        assume: Collection[tuple[str, int]],
        finish: Finish,
    ) -> tuple[WriteResult, int]:
        def once() -> WriteResult:
            snapshot = self.planner.take_snapshot(spec, key)
            return self.writer.write(spec, key, rows, assume, snapshot, finish)

        try:
            return self.retrier.call(f"{spec.name} {key}", once)
        except Exhausted as gave_up:
            return WriteResult(gave_up.outcome(key)), gave_up.attempts
