"""Copy one key (and everything its object carries) from the district to the state.

One state transaction per key: read the state's rows for (district, key), plan, and
write only what differs with dialect-aware upserts and targeted deletes. A refusal rolls
the whole key back and is diagnosed; a transient fault is raised as TransientFault so a
retry loop (Prefect's, or ``sync_key_with_retries`` here) can try again (which layer
retries what: ``retry``).

A batch (``sync_keys``) plans from a snapshot of the state read up front and writes that
plan with checked statements, falling back to the read-in-the-transaction path above
when the check says the snapshot is stale (see ``writer.KeyWriter.write_planned``).

A request is put together from parts with one job each: ``connection.StateConnection``
(the state connection), ``retry.Retrier`` (the budget), ``planner.Planner`` (rows read
ahead and the batch snapshot), ``writer.KeyWriter`` (one key's transaction) and
``parents.KeySyncer`` (a key with its parents, the one the others serve).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine

from selective_sync.errors import BatchAborted, TransientFault
from selective_sync.text import first_line

from ..ledger import KeyRecorder
from ..models import KeyOutcome, Outcome
from ..registry import ObjectSpec, get_object
from .connection import StateConnection
from .parents import KeySyncer
from .planner import Planner
from .retry import Exhausted, Retrier, RetryPolicy
from .writer import KeyWriter

DEFAULT_RETRY = RetryPolicy()


# ------------------------------------------------------------------ public API


def sync_key(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec | str,
    district_number: int,
    key: int,
    *,
    dry_run: bool = False,
    recorder: KeyRecorder | None = None,
) -> KeyOutcome:
    """Make the state's rows of ``key`` equal the district's, in one state transaction.

    Returns SYNCED (with the RowChanges written), UNCHANGED, NOT_FOUND or FAILED (the
    state refused; nothing of the key changed; the reason says why). Raises
    TransientFault for a fault worth retrying. ``dry_run`` plans and writes nothing.
    With ``recorder`` the outcome goes to the ledger (with the key's rows when it writes).
    """
    with _request(
        district_engine, state_engine, district_number, dry_run, None, recorder
    ) as syncer:
        return syncer.key(get_object(spec), key, False)


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
    with _request(district_engine, state_engine, district_number, dry_run, policy, None) as syncer:
        return syncer.key(get_object(spec), key, False)


def sync_with_dependencies(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec | str,
    district_number: int,
    key: int,
    *,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
    recorder: KeyRecorder | None = None,
) -> KeyOutcome:
    """Sync the key's parent objects first (recursively up the registry), then the key.

    A parent that changed is listed in ``parents_synced`` (e.g. ``PersonIdentity 10990``).
    A parent that fails makes the key FAILED with ``parent <Object> <key> could not be
    synced: <why>``. With ``retry`` None a transient fault is raised (TransientFault).
    """
    with _request(
        district_engine, state_engine, district_number, dry_run, retry, recorder
    ) as syncer:
        return syncer.key(get_object(spec), key, True)


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
    recorder: KeyRecorder | None = None,
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
    outcomes so far) is raised instead of failing every remaining key slowly. With
    ``recorder`` every outcome goes to the ledger (``selective_sync.ledger``).
    """
    spec = get_object(spec)
    with _request(
        district_engine, state_engine, district_number, dry_run, retry, recorder, snapshot=True
    ) as syncer:
        return _run_batch(syncer, spec, keys, check_dependencies, on_outcome, abort_after)


def _run_batch(
    syncer: KeySyncer,
    spec: ObjectSpec,
    keys: Sequence[int],
    check_dependencies: bool,
    on_outcome: Callable[[KeyOutcome], None] | None,
    abort_after: int,
) -> list[KeyOutcome]:
    try:
        syncer.planner.prefetch(spec, list(keys), check_dependencies)
    except Exhausted as gave_up:
        raise TransientFault(
            f"reading the district failed after {gave_up.attempts} attempts: "
            f"{first_line(gave_up.fault)}",
            gave_up.fault,
        ) from gave_up.fault
    outcomes: list[KeyOutcome] = []
    in_a_row = 0
    for index, key in enumerate(keys):
        outcome = syncer.key(spec, key, check_dependencies)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
        syncer.flush_ledger(due_only=True)
        exhausted = outcome.outcome is Outcome.FAILED and outcome.transient
        in_a_row = in_a_row + 1 if exhausted else 0
        if abort_after and in_a_row >= abort_after:
            raise BatchAborted(
                f"{in_a_row} keys in a row failed with transient faults; last: {outcome.reason}",
                syncer.retrier.last_fault,
                outcomes,
                list(keys[index + 1 :]),
            )
    return outcomes


# ------------------------------------------------------------------ one request


@contextmanager
def _request(
    district_engine: Engine,
    state_engine: Engine,
    district_number: int,
    dry_run: bool,
    retry: RetryPolicy | None,
    recorder: KeyRecorder | None,
    snapshot: bool = False,
) -> Iterator[KeySyncer]:
    """The parts of one request, sharing its state connection (returned at the end, after
    the ledger rows still buffered are written)."""
    state = StateConnection(state_engine)
    retrier = Retrier(retry)
    syncer = KeySyncer(
        Planner(district_engine, state, district_number, retrier, snapshot),
        KeyWriter(state, district_number, dry_run, recorder),
        retrier,
    )
    try:
        yield syncer
    finally:
        try:
            syncer.flush_ledger()
        finally:
            state.close()
