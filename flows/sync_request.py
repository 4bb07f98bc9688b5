"""The Selective Sync flow: re-send exactly the records an administrator names."""

from __future__ import annotations

import contextvars
import itertools
import re
import threading
import time
from datetime import UTC, datetime
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.utilities.annotations import quote

from flows.acting import acting_user, display_user
from flows.forms import DistrictNumber, IdsText, OptionalText, district_or_default, title
from flows.history_store import refresh_table
from flows.refusals import refused
from flows.runner import ConfiguredTaskRunner
from selective_sync.db import make_engine
from selective_sync.errors import BatchAborted, RequestFailed, SelectiveSyncError
from selective_sync.history.codec import outcome_line, request_status
from selective_sync.ledger import mark_ended
from selective_sync.models import KeyOutcome, RequestStatus, SyncResult
from selective_sync.registry import ObjectName, get_object
from selective_sync.rights import Actor, Right, authorise
from selective_sync.settings import Settings, get_settings, resolve_district
from selective_sync.sync import is_transient, parse_ids
from selective_sync.sync.fanout import plan_jobs, writers_in_flight
from selective_sync.sync.outcomes import apply_after_verification, failure_outcome
from selective_sync.sync.request import district_write_lock, request_alive
from selective_sync.text import first_line
from tasks.history import publish_history, start_progress, update_progress
from tasks.ledger import finish_request_task, open_request_task
from tasks.reports import link_sync_reports
from tasks.sync import key_task, sync_batch_task
from tasks.verify import verify_object_task


def count_id_tokens(ids: object) -> int:
    if isinstance(ids, str):
        return len([t for t in re.split(r"[\s,;]+", ids) if t])
    return len(ids) if isinstance(ids, list) else 0


def _run_name() -> str:
    """E.g. "PersonIdentity x3 by alice" (the parameters as the run was created)."""
    params = flow_run.get_parameters()
    obj = params.get("object")
    obj = getattr(obj, "value", obj)
    name = f"{obj} x{count_id_tokens(params.get('ids'))} by {display_user(params)}"
    return f"{name} (dry run)" if params.get("dry_run") else name


def refresh_history(flow, flow_run, state) -> None:
    """State hook: end the request in the ledger if the run ended before the flow could
    (a crash, a cancel, an unexpected error), then rewrite the district's View History
    table, so it shows the run Complete, Failed, Crashed or Cancelled.

    The parameter names are Prefect's: its Runner calls on_crashed and on_cancellation
    hooks with keywords (``flow=``, ``flow_run=``, ``state=``)."""
    run = flow_run
    InProgressRow.wait(str(run.id))  # this write must come after that one
    district = (run.parameters or {}).get("district")
    ended = ENDED_BY_STATE.get(state.type.value)
    if ended is not None:
        try:
            end_in_ledger(str(run.id), ended, state.message)
        except Exception as exc:  # the heartbeat's silence will tell readers instead
            flow_run_logger(run, flow).warning(
                "The ledger could not record the run's end: %s", first_line(exc)
            )
    try:
        refresh_table(district_or_default(district))
    except Exception as exc:  # the run's outcome stands; the next write catches up
        flow_run_logger(run, flow).warning(
            "The View History table was not updated: %s", first_line(exc)
        )


HISTORY_HOOKS = [refresh_history]
ENDED_BY_STATE = {
    "FAILED": RequestStatus.FAILED,
    "CRASHED": RequestStatus.CRASHED,
    "CANCELLED": RequestStatus.CANCELLED,
}


def end_in_ledger(run_id: str, status: RequestStatus, message: str | None) -> None:
    """Mark the run's request ended in the ledger, if it is still In Progress there."""
    engine = make_engine(get_settings().resolved_state_url)
    try:
        mark_ended(engine, run_id, status, first_line(message) if message else None)
    finally:
        engine.dispose()


@flow(
    name="selective-sync",
    flow_run_name=_run_name,
    task_runner=ConfiguredTaskRunner(),
    validate_parameters=True,
    on_completion=HISTORY_HOOKS,
    on_failure=HISTORY_HOOKS,
    on_crashed=HISTORY_HOOKS,
    on_cancellation=HISTORY_HOOKS,
)
def selective_sync(
    object: Annotated[ObjectName, title("Object")],
    # One text box in the form; a list of whole numbers (API, reconcile) becomes that text.
    ids: Annotated[IdsText, title("IDs")],
    requested_by: Annotated[OptionalText, title("Requested by")] = "",
    district: Annotated[DistrictNumber, title("District")] = 0,
    check_dependencies: Annotated[bool, title("Check dependencies")] = False,
    dry_run: Annotated[bool, title("Dry run")] = False,
) -> SyncResult:
    """Re-send the named records, with the objects they carry, from district to state.

    Args:
        object: The object to sync; its hierarchy (e.g. a person's identities) comes along.
        ids: District IDs (personIDs, enrollmentIDs, ...), pasted as text: separated by
            commas, spaces, semicolons or new lines.
        requested_by: Who asks for the sync; needs the W right on the district.
        district: District number; 0 means the district this deployment serves.
        check_dependencies: Sync a missing or different parent first (e.g. an enrollment's
            person), then the record.
        dry_run: Only verify and show what would change; write nothing.
    """
    logger = get_run_logger()
    settings = get_settings()
    requested_at = datetime.now(UTC)
    try:
        spec = get_object(object)
        config = resolve_district(settings, district_or_default(district))
        actor = authorise_sync(requested_by, config.number, asked_sync(spec.name, ids))
        requested_by = actor.name  # the acting user, as flows.acting resolved it
        # Parsed in the flow, not in a task: bad IDs end the run with one plain line
        # (a failed task would log its traceback first).
        keys = parse_ids(ids)
    except SelectiveSyncError as exc:
        return refused(exc)
    run_id = str(flow_run.get_id())
    opened = open_request_task(
        run_id,
        flow_run.get_name() or run_id,
        config.number,
        spec.name,
        requested_by,
        requested_at,
        check_dependencies,
        dry_run,
        quote(keys),
        return_state=True,
    )
    if opened.is_failed():
        return refused(
            RequestFailed(
                "the request could not be recorded in the state database's ledger, so "
                f"nothing was written: {first_line(opened.message or 'unknown error')}"
            )
        )
    noun = "key" if len(keys) == 1 else "keys"
    logger.info("%s %s of %s requested by %s", len(keys), noun, spec.name, requested_by)

    task_limit = settings.per_key_task_limit
    # A request waiting for the district's lock is in progress too.
    in_progress = InProgressRow(config.number, run_id)
    in_progress.start()
    with request_alive(settings, run_id), district_write_lock(settings, config.number, dry_run):
        outcomes, unverified = verify_sync_verify(
            settings,
            spec.name,
            config.number,
            keys,
            check_dependencies,
            dry_run,
            run_id,
            task_limit,
        )
    in_progress.cancel()
    result = SyncResult(
        object=spec.name,
        district_number=config.number,
        district_name=config.name,
        requested_by=requested_by,
        requested_at=requested_at,
        completed_at=datetime.now(UTC),
        check_dependencies=check_dependencies,
        dry_run=dry_run,
        keys=[outcomes[k] for k in keys],
    )
    status = RequestStatus.FAILED if unverified is not None else request_status(result)
    ended = finish_request_task(run_id, quote(result), status, unverified, return_state=True)
    if ended.is_failed():
        # The keys written are in the ledger already (each with its rows); the rest of
        # the record is published below, and the history closes the request from it.
        logger.error(
            "The ledger could not record the end of this request: %s",
            first_line(ended.message or "unknown error"),
        )
    publish_history(quote(result), status)
    logger.info("Records %s/%s succeeded", result.succeeded, result.total)
    deliver_reports(result)
    if unverified is not None:
        return refused(
            RequestFailed(
                "the request could not be processed: the after-sync verification could not "
                f"read the databases after retries ({unverified}); records "
                f"{result.succeeded}/{result.total} succeeded but were not verified afterwards; "
                "every key's outcome is in the Sync History"
            )
        )
    if status == RequestStatus.FAILED:
        return refused(
            RequestFailed(
                f"the request could not be processed: every key failed on a database fault "
                f"({result.keys[0].reason})"
            )
        )
    name, message = outcome_line(result, status)
    # The runs list shows the state's name, the run page its message too; callers of the
    # flow still get the SyncResult (the state's data).
    return Completed(name=name, message=message, data=result)


# A request shows In Progress in the View History table once it has run this long: most
# requests (a few keys) end sooner and are shown once, when they end; a long one is shown
# while it runs. (Each write is ~6 API calls and reads of the ledger: beside a short
# sync, it cost the sync more than its own work.)
IN_PROGRESS_AFTER_S = 2.0
# The In Progress writes that may still run, by flow run id (see InProgressRow).
_IN_PROGRESS: dict[str, InProgressRow] = {}


class InProgressRow:
    """The request's In Progress row, written by a timer thread IN_PROGRESS_AFTER_S after
    the sync starts unless the sync has ended first; the run's end hook waits for a write
    under way before writing the table again."""

    def __init__(self, district: int, run_id: str) -> None:
        # The flow run's context (its API client, its logger) goes with the thread, as
        # Prefect gives it to task runs' threads.
        context = contextvars.copy_context()
        self.timer = threading.Timer(
            IN_PROGRESS_AFTER_S, context.run, args=(show_in_progress, district)
        )
        self.timer.name = "in-progress-row"
        _IN_PROGRESS[run_id] = self

    def start(self) -> None:
        self.timer.start()

    def cancel(self) -> None:
        """No write from now on (one under way goes on)."""
        self.timer.cancel()

    @staticmethod
    def wait(run_id: str) -> None:
        """Wait for the run's In Progress write, if one is under way."""
        row = _IN_PROGRESS.pop(run_id, None)
        if row is not None:
            row.cancel()
            if row.timer.is_alive():
                row.timer.join()


def show_in_progress(district: int) -> None:
    """Show the request In Progress in the View History table (best effort)."""
    try:
        refresh_table(district)
    except Exception as exc:  # the sync matters more than the table; its end rewrites it
        get_run_logger().warning("The View History table was not updated: %s", first_line(exc))


def verify_sync_verify(
    settings: Settings,
    object_name: str,
    district: int,
    keys: list[int],
    check_dependencies: bool,
    dry_run: bool,
    run_id: str,
    task_limit: int,
) -> tuple[dict[int, KeyOutcome], str | None]:
    """Verify the keys, sync them, verify them again: the outcomes, and why the
    verification after could not run (None when it ran). Up to ``task_limit`` keys get
    one task run each; more are batched."""
    logger = get_run_logger()
    before = verify_object_task(object_name, district, quote(keys))
    logger.info(
        "Before: %s missing at state, %s mismatched, %s missing at district",
        len(before.missing_at_state),
        len(before.mismatched),
        len(before.missing_at_district),
    )

    outcomes = fan_out(
        settings, object_name, district, keys, check_dependencies, dry_run, run_id, task_limit
    )

    unverified = None if dry_run else verify_after(object_name, district, keys, outcomes)
    return outcomes, unverified


def verify_after(
    object_name: str, district: int, keys: list[int], outcomes: dict[int, KeyOutcome]
) -> str | None:
    """Verify the keys again, failing any key reported synced that still differs.

    Returns None, or why the verification could not run (a database down after the
    retries): the outcomes are then kept as the fan-out left them, so the Sync History
    still says which keys were written before the fault and which failed.
    """
    state = verify_object_task(object_name, district, quote(keys), return_state=True)
    after = state.result(raise_on_failure=False)
    if isinstance(after, BaseException):
        get_run_logger().error("The after-sync verification failed: %s", first_line(after))
        return first_line(after)
    apply_after_verification(outcomes, after)
    return None


def authorise_sync(requested_by: str, district: int, asked: str) -> Actor:
    """The acting user; refused (and the refusal recorded) without the W right on the
    district, before anything is read or written."""
    return authorise(
        acting_user(requested_by), Right.W, district, entry_point="flow:selective-sync", asked=asked
    )


def asked_sync(object_name: str, ids: object) -> str:
    """What a sync request asks, for the refusal audit: e.g. "sync PersonIdentity 3 keys"."""
    count = count_id_tokens(ids)
    return f"sync {object_name} {count} key{'' if count == 1 else 's'}"


def deliver_reports(result: SyncResult) -> None:
    """Link the run's reports (made when first opened, from the ledger); a failure is
    logged and leaves the run Complete.

    The history (already published) is the record of the request and the reports are a
    view of it that ``selective-sync report RUN`` can build again, so a report that cannot
    be linked must not turn a processed request into a Failed one.
    """
    run_id = flow_run.get_id()
    try:
        link_sync_reports(result, run_id)
    except Exception as exc:  # the record is complete; the report can be built from it
        get_run_logger().error(
            "The reports of this run could not be linked (%s). The sync and its Sync History "
            "are complete; build the report with: selective-sync report %s --format pdf -o FILE",
            first_line(exc),
            run_id,
        )


def fan_out(
    settings: Settings,
    object_name: str,
    district: int,
    keys: list[int],
    check_dependencies: bool,
    dry_run: bool,
    run_id: str,
    task_limit: int,
) -> dict[int, KeyOutcome]:
    """Run the sync jobs (one key, or a batch of keys each) with bounded writers in flight;
    up to ``task_limit`` keys get one task run each."""
    in_flight = writers_in_flight(settings.resolved_state_url, settings.max_workers)
    jobs = plan_jobs(keys, task_limit, in_flight)
    per_key = len(keys) <= task_limit
    sync_key_task = key_task(settings)

    def submit(number: int, chunk: list[int]):
        if per_key:
            return sync_key_task.submit(
                object_name, district, chunk[0], check_dependencies, dry_run, run_id
            )
        return sync_batch_task.submit(
            object_name, district, quote(chunk), number, check_dependencies, dry_run, run_id
        )

    outcomes: dict[int, KeyOutcome] = {}
    progress = ProgressReporter(district, total=len(keys))
    waiting = iter(enumerate(jobs, start=1))
    running: dict = {}
    while True:
        for number, chunk in itertools.islice(waiting, in_flight - len(running)):
            running[submit(number, chunk)] = chunk
        if not running:
            break
        future = next(as_completed(list(running)))
        chunk = running.pop(future)
        collect(future.result(raise_on_failure=False), chunk, outcomes, settings.retry_attempts)
        progress.advance(len(chunk))
    return outcomes


def collect(value, chunk: list[int], outcomes: dict[int, KeyOutcome], budget: int = 1) -> None:
    """Record a finished task's outcomes; a task that failed outright fails its keys.

    A transient fault failed the task after the whole retry ``budget``; the keys an
    aborted batch did not reach were tried 0 times.
    """
    if isinstance(value, BaseException):
        attempts = budget if is_transient(value) else 1
        if isinstance(value, BatchAborted):
            attempts = 0
        for outcome in getattr(value, "outcomes", None) or []:
            outcomes[outcome.key] = outcome  # keys a failed batch finished
        for key in chunk:
            if key not in outcomes:
                outcomes[key] = failure_outcome(key, value, attempts)
        return
    for outcome in value if isinstance(value, list) else [value]:
        outcomes[outcome.key] = outcome


class ProgressReporter:
    """The run's progress artifact: made when the first job ends (at 100% at once for a
    request of one job), then moved at most once a second (each write is an API call)."""

    def __init__(self, district: int, total: int, interval_s: float = 1.0):
        self.district, self.total, self.interval_s = district, max(total, 1), interval_s
        self.artifact_id = None
        self.done = 0
        self.last = 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.done >= self.total or now - self.last >= self.interval_s:
            progress = 100.0 * self.done / self.total
            if self.artifact_id is None:
                self.artifact_id = start_progress(self.district, progress)
            else:
                update_progress(self.artifact_id, progress)
            self.last = now
