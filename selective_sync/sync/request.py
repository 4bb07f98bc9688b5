"""One Selective Sync request run in this process, with no Prefect: the command line's sync.

The steps and the record are the ``selective-sync`` flow's, through the same core
functions its tasks call: authorise (W) → parse and de-duplicate the IDs → open the request
in the ledger → verify the keys → sync each key (``copy.sync_keys``: one state transaction
per key with its ledger row, transient faults retried on the settings' ``RetryPolicy``) →
verify the keys again (a key reported synced that still differs fails:
``outcomes.apply_after_verification``) → close the request in the ledger. The district's
lock is held while keys are written (not for a dry run) and the request's heartbeat kept,
as in the flow. The request gets a run id of its own (a UUID, marked ``CLI_ORIGIN`` in the
ledger: no Prefect run exists) and a run name like the flow's, so the Sync History,
``selective-sync report RUN`` and the View History table (rewritten from the ledger) show
it as any other request. Reports are made on request, not here.

The nightly reconciliation runs its syncs through the same steps (:func:`run_keys`, marked
``NIGHTLY_ORIGIN``), on the engines, settings and authorisation its district's run
resolved once, with the district's whole-object verification standing for the one before
the sync (``selective_sync.reconcile_run``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar
from uuid import uuid4

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from selective_sync.db import check_databases, make_engine
from selective_sync.errors import BatchAborted, RequestFailed
from selective_sync.history.codec import request_status
from selective_sync.ledger import (
    CLI_ORIGIN,
    Heartbeat,
    KeyRecorder,
    finish_request,
    mark_ended,
    open_request,
)
from selective_sync.locks import district_lock
from selective_sync.models import KeyOutcome, ObjectVerification, RequestStatus, SyncResult
from selective_sync.registry import ObjectSpec, get_object
from selective_sync.rights import Right, authorise
from selective_sync.settings import DistrictConfig, Settings, get_settings, resolve_district
from selective_sync.text import first_line
from selective_sync.verification.engine import verify_object

from .copy import sync_keys
from .fanout import plan_jobs, writers_in_flight
from .faults import is_transient
from .keys import parse_ids
from .outcomes import apply_after_verification, failure_outcome
from .retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")
Progress = Callable[[float], None]


@dataclass(frozen=True)
class SyncRequest:
    """What a person asks for: the flow's parameters."""

    object: str
    ids: str | Sequence[int]
    requested_by: str
    district: int | None = None
    check_dependencies: bool = False
    dry_run: bool = False


def count_id_tokens(ids: object) -> int:
    """How many IDs were given, as typed (before de-duplication)."""
    if isinstance(ids, str):
        return len([t for t in re.split(r"[\s,;]+", ids) if t])
    return len(ids) if isinstance(ids, list | tuple) else 0


def run_name(request: SyncRequest) -> str:
    """E.g. "PersonIdentity x3 by alice", as the flow names its runs."""
    name = f"{request.object} x{count_id_tokens(request.ids)} by {request.requested_by}"
    return f"{name} (dry run)" if request.dry_run else name


def run_request(
    request: SyncRequest,
    settings: Settings | None = None,
    *,
    on_progress: Progress | None = None,
    entry_point: str = "cli:sync",
) -> SyncResult:
    """Run ``request`` to its end and return every key's outcome.

    A refusal (no W right, bad IDs, an unknown object or district, a database missing)
    raises before anything is written. A request that cannot be processed (every key on a
    database fault, or the verification after the sync failing after its retries) raises
    RequestFailed once its outcomes are in the ledger, as the flow's run would fail.
    ``on_progress`` is told the percentage of keys done; ``entry_point`` names where the
    request came from in a refusal's record.
    """
    settings = settings or get_settings()
    spec = get_object(request.object)
    config = resolve_district(settings, request.district)
    count = count_id_tokens(request.ids)
    authorise(
        request.requested_by,
        Right.W,
        config.number,
        entry_point=entry_point,
        asked=f"sync {spec.name} {count} key{'' if count == 1 else 's'}",
        settings=settings,
    )
    keys = parse_ids(request.ids)
    check_databases(config.url, settings.resolved_state_url)
    with open_engines(config.url, settings.resolved_state_url) as engines:
        done = run_keys(
            request,
            keys,
            spec,
            config,
            settings,
            engines,
            origin=CLI_ORIGIN,
            on_progress=on_progress,
        )
    if done.failure is not None:
        raise RequestFailed(done.failure)
    return done.result


@dataclass(frozen=True)
class RequestOutcome:
    """How a request run by :func:`run_keys` ended (its record is in the ledger)."""

    run_id: str
    result: SyncResult
    status: RequestStatus
    after: ObjectVerification | None
    """The verification of the request's keys after the sync (None: a dry run, or it failed)."""
    unverified: str | None = None
    """Why the verification after the sync could not run (None when it ran)."""

    @property
    def failure(self) -> str | None:
        """Why the request could not be processed, as its run would fail; None if it was."""
        if self.unverified is not None:
            return (
                "the request could not be processed: the after-sync verification could not "
                f"read the databases after retries ({self.unverified}); records "
                f"{self.result.succeeded}/{self.result.total} succeeded but were not verified "
                "afterwards; every key's outcome is in the Sync History"
            )
        if self.status == RequestStatus.FAILED:
            return (
                "the request could not be processed: every key failed on a database fault "
                f"({self.result.keys[0].reason})"
            )
        return None


def run_keys(
    request: SyncRequest,
    keys: list[int],
    spec: ObjectSpec,
    config: DistrictConfig,
    settings: Settings,
    engines: tuple[Engine, Engine],
    *,
    origin: str,
    before: ObjectVerification | None = None,
    on_progress: Progress | None = None,
) -> RequestOutcome:
    """Run an authorised request whose IDs are parsed (``keys``) on ``engines`` (district,
    state): open it in the ledger (as ``origin``), verify its keys, sync them, verify them
    again, close it. ``before``, a verification of the object already made that covers the
    keys (the nightly's whole-object one), stands for the verification before the sync: the
    keys are not read twice.

    Raises RequestFailed when the request cannot be recorded (nothing written) or a database
    fault stops it midway (each key written is in the ledger); a request that ran to its
    end returns its outcome, ``failure`` saying whether it could be processed.
    """
    district_engine, state_engine = engines
    requested_at = datetime.now(UTC)
    policy = RetryPolicy.from_settings(settings)
    run_id = str(uuid4())
    try:
        retrying(
            policy,
            lambda: open_request(
                state_engine,
                run_id=run_id,
                run_name=run_name(request),
                district=config.number,
                object_name=spec.name,
                requested_by=request.requested_by,
                requested_at=requested_at,
                check_dependencies=request.check_dependencies,
                dry_run=request.dry_run,
                keys=keys,
                origin=origin,
            ),
        )
    except Exception as exc:
        raise RequestFailed(
            "the request could not be recorded in the state database's ledger, so "
            f"nothing was written: {first_line(exc)}"
        ) from exc
    log.info("%s keys of %s requested by %s", len(keys), spec.name, request.requested_by)
    work = _Work(settings, policy, config, spec, keys, request, run_id, on_progress, before)
    try:
        with (
            request_alive(settings, run_id),
            district_write_lock(settings, config.number, request.dry_run),
        ):
            outcomes, after, unverified = work.verify_sync_verify(district_engine, state_engine)
    except BaseException as exc:
        _end_unfinished(state_engine, run_id, exc)
        if isinstance(exc, SQLAlchemyError):
            # A database fault the retries did not outlast: one plain line, as the
            # flow's failed run says it; each key written is in the ledger.
            raise RequestFailed(
                f"the request could not be processed: {first_line(exc)}; every key "
                "written before the fault is in the Sync History"
            ) from exc
        raise
    result = SyncResult(
        object=spec.name,
        district_number=config.number,
        district_name=config.name,
        requested_by=request.requested_by,
        requested_at=requested_at,
        completed_at=datetime.now(UTC),
        check_dependencies=request.check_dependencies,
        dry_run=request.dry_run,
        keys=[outcomes[k] for k in keys],
    )
    status = RequestStatus.FAILED if unverified is not None else request_status(result)
    _close(state_engine, policy, run_id, result, status, unverified)
    return RequestOutcome(run_id, result, status, after, unverified)


@dataclass
class _Work:
    """The request's keys verified, synced and verified again."""

    settings: Settings
    policy: RetryPolicy
    config: DistrictConfig
    spec: ObjectSpec
    keys: list[int]
    request: SyncRequest
    run_id: str
    on_progress: Progress | None
    before: ObjectVerification | None = None

    def verify_sync_verify(
        self, district_engine: Engine, state_engine: Engine
    ) -> tuple[dict[int, KeyOutcome], ObjectVerification | None, str | None]:
        """The outcomes, the verification after (None for a dry run or when it failed), and
        why it could not run (None when it ran)."""
        before = self.before or self.verify(district_engine, state_engine)
        wanted = set(self.keys)
        log.info(
            "Before: %s missing at state, %s mismatched, %s missing at district",
            sum(1 for k in before.missing_at_state if k in wanted),
            sum(1 for k in before.mismatched if k in wanted),
            sum(1 for k in before.missing_at_district if k in wanted),
        )
        outcomes = self.sync(district_engine, state_engine)
        if self.request.dry_run:
            return outcomes, None, None
        try:
            after = self.verify(district_engine, state_engine)
        except Exception as exc:
            # The outcomes stay as the sync left them: the history says which keys were
            # written before the fault.
            log.error("The after-sync verification failed: %s", first_line(exc))
            return outcomes, None, first_line(exc)
        apply_after_verification(outcomes, after)
        return outcomes, after, None

    def verify(self, district_engine: Engine, state_engine: Engine) -> ObjectVerification:
        return retrying(
            self.policy,
            lambda: verify_object(
                district_engine,
                state_engine,
                self.spec,
                self.config.number,
                self.keys,
                chunk_rows=self.settings.verify_chunk_rows,
            ),
        )

    def sync(self, district_engine: Engine, state_engine: Engine) -> dict[int, KeyOutcome]:
        """Every key synced, in batches of keys run by as many threads as the state takes
        writers (one on SQLite); each key its own transaction, ledger row and retries."""
        in_flight = writers_in_flight(self.settings.resolved_state_url, self.settings.max_workers)
        jobs = plan_jobs(self.keys, 0, in_flight)
        done: list[int] = [0]
        total = max(len(self.keys), 1)

        def advanced(_outcome: KeyOutcome) -> None:
            done[0] += 1
            if self.on_progress is not None:
                self.on_progress(100.0 * done[0] / total)

        def run(chunk: list[int]) -> list[KeyOutcome]:
            return sync_keys(
                district_engine,
                state_engine,
                self.spec,
                self.config.number,
                chunk,
                dry_run=self.request.dry_run,
                check_dependencies=self.request.check_dependencies,
                retry=self.policy,
                on_outcome=advanced,
                recorder=KeyRecorder(self.run_id),
            )

        outcomes: dict[int, KeyOutcome] = {}
        if in_flight == 1 or len(jobs) == 1:
            for chunk in jobs:
                self.collect(chunk, lambda c=chunk: run(c), outcomes)
            return outcomes
        with ThreadPoolExecutor(max_workers=min(in_flight, len(jobs))) as pool:
            futures = [(chunk, pool.submit(run, chunk)) for chunk in jobs]
            for chunk, future in futures:
                self.collect(chunk, future.result, outcomes)
        return outcomes

    def collect(self, chunk: list[int], result: Callable[[], list[KeyOutcome]], into: dict) -> None:
        """A batch's outcomes; a batch that failed outright fails the keys it did not reach
        (after the whole retry budget on a transient fault; 0 attempts for the keys an
        aborted batch never tried), as the flow does with a failed task."""
        try:
            into.update((o.key, o) for o in result())
        except Exception as exc:
            attempts = self.policy.attempts if is_transient(exc) else 1
            if isinstance(exc, BatchAborted):
                attempts = 0
            into.update((o.key, o) for o in getattr(exc, "outcomes", None) or [])
            for key in chunk:
                if key not in into:
                    into[key] = failure_outcome(key, exc, attempts)


def retrying(policy: RetryPolicy, work: Callable[[], T]) -> T:
    """``work()``, tried again on a transient fault within ``policy``'s budget (the
    reads and ledger writes around the keys, which the flow's tasks retry the same way;
    the nightly's verifications too)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return work()
        except Exception as exc:
            if not is_transient(exc) or attempt >= policy.attempts:
                raise
            pause = policy.delay(attempt)
            log.info("%s; attempt %d again in %.2fs", first_line(exc), attempt + 1, pause)
            policy.sleep(pause)


@contextmanager
def open_engines(district_url: str, state_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Engines on the district and the state database for a request (or a district's night)."""
    district, state = make_engine(district_url), make_engine(state_url)
    try:
        yield district, state
    finally:
        district.dispose()
        state.dispose()


@contextmanager
def request_alive(settings: Settings, run_id: str) -> Iterator[None]:
    """The request's heartbeat in the ledger while it runs (its own engine: a thread)."""
    engine = make_engine(settings.resolved_state_url)
    try:
        with Heartbeat(engine, run_id, settings.ledger_heartbeat_s):
            yield
    finally:
        engine.dispose()


def district_write_lock(settings: Settings, district: int, dry_run: bool):
    """The district's lock around a sync that writes (shared: syncs may overlap; the
    district's reconciliation takes it exclusive). A dry run writes nothing: no lock."""
    if dry_run:
        return nullcontext()
    return district_lock(
        settings.resolved_state_url,
        district,
        settings.district_lock_timeout_s,
        holder=f"the selective sync of district {district}",
        exclusive=False,
    )


def _close(
    engine: Engine,
    policy: RetryPolicy,
    run_id: str,
    result: SyncResult,
    status: RequestStatus,
    message: str | None,
) -> None:
    """Close the request in the ledger; a failure is logged (every key written is in the
    ledger already with its rows; the heartbeat's silence ends the request for readers)."""
    try:
        retrying(
            policy,
            lambda: finish_request(
                engine,
                run_id,
                status,
                completed_at=result.completed_at or datetime.now(UTC),
                outcomes=[(result.object, o) for o in result.keys],
                message=message,
            ),
        )
    except Exception as exc:
        log.error("The ledger could not record the end of this request: %s", first_line(exc))


def _end_unfinished(engine: Engine, run_id: str, exc: BaseException) -> None:
    """The request stopped before its end (interrupted, a database fault, a bug): say so
    in the ledger if it can, so the history does not wait for the heartbeat to go quiet."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    status = RequestStatus.CANCELLED if interrupted else RequestStatus.FAILED
    message = "interrupted" if interrupted else first_line(exc)
    try:
        mark_ended(engine, run_id, status, message)
    except Exception as failed:  # the heartbeat's silence will tell readers instead
        log.warning("The ledger could not record the request's end: %s", first_line(failed))
