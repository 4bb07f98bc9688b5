"""Scheduled reconciliation: verify every object of every district, then re-sync the drift.

Each district is reconciled by one task run, ``reconcile-district-<n>``
(``tasks.reconcile``): the core's district night (``selective_sync.reconcile_run``) under
the district's lock (so it never overlaps a person's selective sync of the district): each
object verified once, the keys that differ synced as one Sync History entry per object (a
ledger request with origin ``nightly``; reports are made when someone asks), the district's
Verification Summary after the syncs stored; then its ``reconcile-district-<n>`` table, the
summary's artifacts and the drift events. The flow rewrites the district's View History
table once, after the task.

Two flows:

- ``reconcile`` (the nightly) reconciles every district. On a Prefect server with the
  ``reconcile-districts/reconcile-some-districts`` deployment ready (workers on the work
  pool, or ``flows.serve``, polling for it), the districts are split into batches
  (``reconcile.district_batches``), each a flow run of ``reconcile-districts`` on the work
  pool, at most the deployment's concurrency limit at once: W workers reconcile W districts
  at a time, and a run's process start is paid once per batch instead of once per district.
  A run no worker starts, or one that runs too long, is cancelled and its unfinished
  districts reported in error. Without one (the embedded default, or the deployment not
  deployed or not served) the districts are task runs of this flow, one after another.
  Either way a failed district is reported and the others go on; the parent writes one
  narrow state-wide ``reconcile-summary`` artifact linking to each district's run.
- ``reconcile-districts`` reconciles a batch of districts, one after another.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from pydantic import Field

from flows.api_client import api_client, read_all_artifacts
from flows.forms import NoneAsEmpty, title
from flows.history_store import refresh_table
from selective_sync.errors import ReconcileIncomplete, RightsError, StoreUnavailable
from selective_sync.reconcile import (
    DEFAULT_MAX_KEYS,
    REQUESTER,
    DistrictReconciliation,
    DistrictSummary,
    StateReconciliation,
    check_max_keys,
    district_batches,
    district_key,
    objects_in_order,
    state_markdown,
    summary_from_table,
)
from selective_sync.registry import ObjectName
from selective_sync.rights import Right, authorise
from selective_sync.settings import configured_districts, get_settings, resolve_district
from selective_sync.text import first_line
from tasks.reconcile import reconcile_district_task

ARTIFACT_KEY = "reconcile-summary"
POLL_S = 2.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _run_name() -> str:
    chosen = flow_run.get_parameters().get("districts")
    return f"reconcile {', '.join(map(str, chosen))}" if chosen else "reconcile all districts"


# ---------------------------------------------------------------- the nightly (parent)


@flow(name="reconcile", flow_run_name=_run_name, validate_parameters=True)
def reconcile(
    districts: Annotated[list[int], NoneAsEmpty, title("Districts")] = (),
    objects: Annotated[list[ObjectName], NoneAsEmpty, title("Objects")] = (),
    max_keys: Annotated[int, Field(ge=1), title("Most keys per object")] = DEFAULT_MAX_KEYS,
) -> StateReconciliation:
    """Verify, then selective-sync the keys that differ, for every district (nightly).

    Args:
        districts: District numbers (empty: every district configured here).
        objects: Objects to reconcile (empty: every object in the registry, parents first).
        max_keys: At most this many keys are re-sent per object and district; the rest are
            reported as left over and sent by the next run.
    """
    logger = get_run_logger()
    settings = get_settings()
    check_max_keys(max_keys)
    names = objects_in_order(objects or None)
    chosen = (
        [resolve_district(settings, n) for n in dict.fromkeys(districts)]
        if districts
        else configured_districts(settings)
    )
    authorise_reconciliation([c.number for c in chosen], "flow:reconcile")
    deployment = batch_deployment()
    result = StateReconciliation(
        started_at=datetime.now(UTC),
        max_keys=max_keys,
        mode="work pool" if deployment else "in-process",
    )
    numbers = [c.number for c in chosen]
    logger.info("Reconciling %s districts (%s)", len(numbers), result.mode)
    if deployment:
        result.districts = fan_out(deployment, numbers, names, max_keys)
    else:
        result.districts = [reconcile_here(n, names, max_keys)[1] for n in numbers]
    result.completed_at = datetime.now(UTC)
    publish_summary(result)
    if result.errors:
        raise ReconcileIncomplete(
            f"reconciliation finished with {len(result.errors)} district(s) in error "
            "(the others were reconciled): " + "; ".join(result.errors)
        )
    return result


def publish_summary(result: StateReconciliation) -> None:
    """The state-wide artifact: a narrow table, one line per district, linking its run."""
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=state_markdown(result, run_link),
        description="Scheduled reconciliation of every district: sent, succeeded, left over",
    )


def run_link(run_path: str) -> str:
    """The UI address of a run (``task-run/<id>``, ``flow-run/<id>``; relative when no UI
    URL is known: the UI resolves it)."""
    base = (PREFECT_UI_URL.value() or "").rstrip("/")
    return f"{base}/runs/{run_path}"


def batch_deployment() -> Any | None:
    """The ``reconcile-districts`` deployment when a Prefect server has it; else None."""
    if not PREFECT_API_URL.value():
        return None
    name = get_settings().reconcile_batch_deployment
    try:
        with api_client(StoreUnavailable, "the deployments") as client:
            deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        get_run_logger().warning(
            "No deployment %s on this server: the districts run in this process, one "
            "after another (deploy it to spread them over the work pool)",
            name,
        )
        return None
    if getattr(deployment.status, "value", deployment.status) == "NOT_READY":
        # Prefect marks a deployment NOT_READY when no worker or runner has polled for it
        # lately: its runs would wait for nobody, so the night runs here instead.
        get_run_logger().warning(
            "Deployment %s is not ready (no worker or flows.serve has polled for it "
            "lately): the districts run in this process, one after another",
            name,
        )
        return None
    return deployment


def reconcile_here(
    number: int, names: list[str], max_keys: int
) -> tuple[DistrictReconciliation | None, DistrictSummary]:
    """One district as a task run of this flow run, then its View History table; its
    figures (None when the task broke) and its line of the state-wide summary."""
    started = time.monotonic()
    state = reconcile_district_task(number, names, max_keys, return_state=True)
    seconds = time.monotonic() - started
    run_id = str(state.state_details.task_run_id)
    value = state.result(raise_on_failure=False)
    if not isinstance(value, DistrictReconciliation):
        why = first_line(value) if value else state.message or "no result"
        error = f"run {state.type.value.lower()}: {why}"
        return None, DistrictSummary(
            number, district_name(number), error=error, run_id=run_id, seconds=seconds
        )
    if any(o.sync_run_id for o in value.objects):
        show_syncs_in_history(number)
    return value, value.summary(run_id, seconds)


def fan_out(
    deployment: Any, numbers: list[int], names: list[str], max_keys: int
) -> list[DistrictSummary]:
    """The districts in batches, one ``reconcile-districts`` run per batch on the work
    pool, at most the deployment's concurrency limit in flight (no run waits on Prefect's
    slot back-off).

    A run no worker starts within ``reconcile_start_timeout_s``, or still going after
    ``reconcile_district_timeout_s`` per district of its batch, is cancelled and its
    unfinished districts reported in error, so a stopped worker or a hung district never
    holds the night forever."""
    logger = get_run_logger()
    settings = get_settings()
    limit = deployment_limit(deployment) or max(len(numbers), 1)
    waiting = district_batches(numbers, limit, settings.reconcile_districts_per_run)
    if waiting:
        logger.info(
            "%s runs of up to %s districts, %s at once", len(waiting), len(waiting[0]), limit
        )
    running: dict[UUID, tuple[list[int], float]] = {}
    done: dict[int, DistrictSummary] = {}
    while waiting or running:
        while waiting and len(running) < limit:
            batch = waiting.pop(0)
            running[start_batch(batch, names, max_keys)] = (batch, time.monotonic())
        time.sleep(POLL_S)
        for run in read_runs(list(running)):
            batch, started = running[run.id]
            seconds = time.monotonic() - started
            state = run.state
            if state is not None and state.type.value in TERMINAL:
                why = first_line(state.message) if state.message else "no result"
                why = f"run {state.type.value.lower()}: {why}"
            elif why := overdue(run, seconds, len(batch), settings):
                cancel_run(run)
            else:
                continue
            done.update(read_batch(batch, run.id, why))
            running.pop(run.id)
            logger.info(
                "%s: %s in %.1f s (%s districts left)",
                batch_run_name(batch),
                "completed" if state is not None and state.type.value == "COMPLETED" else why,
                seconds,
                sum(len(b) for b in waiting) + sum(len(b) for b, _ in running.values()),
            )
    return [done[n] for n in numbers]


def start_batch(batch: list[int], names: list[str], max_keys: int) -> UUID:
    """Schedule one batch's run on the work pool (returns at once)."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        get_settings().reconcile_batch_deployment,
        parameters={"districts": batch, "objects": names, "max_keys": max_keys},
        timeout=0,
        as_subflow=True,
        flow_run_name=batch_run_name(batch),
    )
    return run.id


def batch_run_name(batch: list[int]) -> str:
    if len(batch) == 1:
        return f"reconcile district {batch[0]}"
    return f"reconcile districts {batch[0]}-{batch[-1]} ({len(batch)})"


def overdue(run: Any, seconds: float, districts: int, settings: Any) -> str | None:
    """Why a batch's run is given up on, or None while it may still finish."""
    if run.start_time is None and seconds > settings.reconcile_start_timeout_s:
        return (
            f"not started within {settings.reconcile_start_timeout_s:.0f} s: no worker "
            "picked the run up (is a worker running for the deployment's work pool, or "
            "python -m flows.serve?); the run was cancelled"
        )
    allowed = settings.reconcile_district_timeout_s * max(districts, 1)
    if seconds > allowed:
        return (
            f"still running after {allowed:.0f} s ({districts} districts, "
            "SELECTIVE_SYNC_RECONCILE_DISTRICT_TIMEOUT_S each); the run was cancelled"
        )
    return None


def cancel_run(run: Any) -> None:
    """Cancel a batch's run: at once if it never started, else through its worker."""
    from prefect.states import Cancelled, Cancelling

    state = Cancelled() if run.start_time is None else Cancelling()
    with api_client(StoreUnavailable, "the reconciliation runs") as client:
        client.set_flow_run_state(run.id, state, force=True)


def deployment_limit(deployment: Any) -> int | None:
    limit = getattr(deployment, "global_concurrency_limit", None)
    if limit is not None and getattr(limit, "limit", None):
        return int(limit.limit)
    return getattr(deployment, "concurrency_limit", None) or None


def read_runs(run_ids: list[UUID]) -> list[Any]:
    """The runs ``run_ids`` as the server has them now (one API call)."""
    with api_client(StoreUnavailable, "the reconciliation runs") as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)), limit=len(run_ids)
        )


def read_batch(batch: list[int], run_id: UUID, why: str) -> dict[int, DistrictSummary]:
    """Each district's line from the table its task run left in the batch's run (one read);
    a district with none (its run ended, or was cancelled, before it) has ``why``."""
    with api_client(StoreUnavailable, "the reconciliation results") as client:
        artifacts = read_all_artifacts(
            client,
            ArtifactFilter(
                key=ArtifactFilterKey(any_=[district_key(n) for n in batch]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            ),
        )
    found: dict[int, DistrictSummary] = {}
    for artifact in artifacts:
        data = artifact.data
        rows = json.loads(data) if isinstance(data, str) else data
        try:
            line = summary_from_table(rows, str(artifact.task_run_id or run_id))
        except (ValueError, KeyError, TypeError):
            continue
        if artifact.task_run_id is None:
            line.run_kind = "flow-run"
        found[line.number] = line
    for number in batch:
        if number not in found:
            found[number] = DistrictSummary(
                number,
                district_name(number),
                error=why if "cancelled" in why else f"{why} (before this district was done)",
                run_id=str(run_id),
                run_kind="flow-run",
            )
    return found


def district_name(number: int) -> str:
    return next((d.name for d in configured_districts(get_settings()) if d.number == number), "")


# ---------------------------------------------------------------- a batch of districts


def _batch_run_name() -> str:
    return batch_run_name(list(flow_run.get_parameters().get("districts") or []) or [0])


@flow(name="reconcile-districts", flow_run_name=_batch_run_name, validate_parameters=True)
def reconcile_districts(
    districts: Annotated[list[int], title("Districts")],
    objects: Annotated[list[ObjectName], NoneAsEmpty, title("Objects")] = (),
    max_keys: Annotated[int, Field(ge=1), title("Most keys per object")] = DEFAULT_MAX_KEYS,
) -> list[DistrictReconciliation]:
    """Reconcile these districts, one after another: verify, selective-sync what differs,
    store the Verification Summary after.

    Args:
        districts: District numbers.
        objects: Objects to reconcile (empty: every object in the registry, parents first).
        max_keys: At most this many keys are re-sent per object; the rest wait for the
            next run.
    """
    settings = get_settings()
    check_max_keys(max_keys)
    names = objects_in_order(objects or None)
    numbers = [resolve_district(settings, n).number for n in dict.fromkeys(districts)]
    authorise_reconciliation(numbers, "flow:reconcile-districts")
    done = [reconcile_here(n, names, max_keys) for n in numbers]
    errors = [f"district {line.number}: {line.error}" for _, line in done if line.error]
    if errors:
        raise ReconcileIncomplete(
            f"{len(errors)} of {len(numbers)} districts not fully reconciled: " + "; ".join(errors)
        )
    return [figures for figures, _ in done if figures is not None]


def show_syncs_in_history(district: int) -> None:
    """Rewrite the district's View History table once for all its syncs of the night
    (best effort, the next write catches up). The clean-up after runs deleted outside the
    history is left to the writes that follow a person's request: the nightly's syncs have
    no runs, and the scan reads every history artifact of the district."""
    try:
        refresh_table(district, clean=False)
    except Exception as exc:
        get_run_logger().warning("The View History table was not updated: %s", first_line(exc))


def authorise_reconciliation(districts: list[int], entry_point: str) -> None:
    """Refuse to start unless the reconciliation's requester holds W (which reads, to
    verify) on every district it reconciles; nothing is read first."""
    actor = authorise(REQUESTER, entry_point=entry_point)
    try:
        for number in districts:
            actor.require(Right.W, number, asked=f"reconcile district {number}")
    except RightsError as exc:
        error = RightsError(f"scheduled reconciliation cannot run: {exc}")
        error.refusal = getattr(exc, "refusal", None)
        raise error from exc
