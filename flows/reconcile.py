"""Scheduled reconciliation: verify every object of every district, then re-sync the drift.

Two flows:

- ``reconcile-district`` reconciles one district (verify, selective-sync what differs,
  then the district's Verification Summary, stored as it is after the syncs) under the
  district's lock (``selective_sync.locks``), so it never overlaps a person's selective
  sync of the same district; its ``reconcile-district-<n>`` table
  artifact holds its per-object figures.
- ``reconcile`` (the nightly) runs ``reconcile-district`` once per district. On a Prefect
  server with the ``reconcile-district/reconcile-one-district`` deployment ready (a worker
  or ``flows.serve`` polling for it), each district is its own flow run on the work pool
  (``run_deployment``), at most the deployment's concurrency limit at once, so W workers
  reconcile W districts at a time; a run no worker starts, or one that runs too long, is
  cancelled and its district reported in error. Without one (the embedded default, or the
  deployment not deployed or not served) the districts run in this process, one after
  another.
  Either way a failed district is reported and the others go on; the parent writes one
  narrow state-wide ``reconcile-summary`` artifact linking to each district's run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
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

from flows.api_client import api_client
from flows.forms import NoneAsEmpty, title
from flows.history_store import refresh_table
from flows.sync_request import selective_sync
from flows.verification_summary import verification_summary
from selective_sync.alerts import AlertThresholds, reconcile_event
from selective_sync.db import check_databases
from selective_sync.errors import ReconcileIncomplete, RightsError, StoreUnavailable
from selective_sync.locks import district_lock
from selective_sync.models import accuracy
from selective_sync.reconcile import (
    DEFAULT_MAX_KEYS,
    REQUESTER,
    DistrictReconciliation,
    DistrictSummary,
    ObjectReconciliation,
    StateReconciliation,
    check_max_keys,
    district_table,
    objects_in_order,
    plan_object,
    state_markdown,
    summary_from_table,
)
from selective_sync.registry import ObjectName
from selective_sync.rights import Right, authorise
from selective_sync.settings import configured_districts, get_settings, resolve_district
from selective_sync.text import first_line, md_escape
from tasks.alerts import emit_drift_event
from tasks.verify import verify_object_task

ARTIFACT_KEY = "reconcile-summary"
POLL_S = 1.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def district_key(district: int) -> str:
    return f"reconcile-district-{int(district)}"


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
    deployment = district_deployment()
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
        result.districts = [in_process(n, names, max_keys) for n in numbers]
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


def run_link(run_id: str) -> str:
    """The UI address of a flow run (relative when no UI URL is known: the UI resolves it)."""
    base = (PREFECT_UI_URL.value() or "").rstrip("/")
    return f"{base}/runs/flow-run/{run_id}"


def district_deployment() -> Any | None:
    """The ``reconcile-district`` deployment when a Prefect server has it; else None."""
    if not PREFECT_API_URL.value():
        return None
    name = get_settings().reconcile_district_deployment
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
        # Prefect marks a deployment NOT_READY when no worker or runner has polled for
        # it lately: its runs would wait for nobody, so the night runs here instead.
        get_run_logger().warning(
            "Deployment %s is not ready (no worker or flows.serve has polled for it "
            "lately): the districts run in this process, one after another",
            name,
        )
        return None
    return deployment


def in_process(district: int, names: list[str], max_keys: int) -> DistrictSummary:
    """One district as a subflow of this run; its figures from its artifact."""
    started = time.monotonic()
    state = reconcile_district(
        district=district, objects=names, max_keys=max_keys, return_state=True
    )
    run_id = str(state.state_details.flow_run_id)
    seconds = time.monotonic() - started
    return read_district(district, run_id, state.type.value, state.message, seconds)


def fan_out(deployment: Any, numbers: list[int], names: list[str], max_keys: int):
    """One ``reconcile-district`` run per district on the work pool, at most the
    deployment's concurrency limit in flight (no run waits on Prefect's slot back-off).

    A run no worker starts within ``reconcile_start_timeout_s``, or still going after
    ``reconcile_district_timeout_s``, is cancelled and its district reported in error, so a
    stopped worker or a hung district never holds the night forever."""
    logger = get_run_logger()
    settings = get_settings()
    limit = deployment_limit(deployment) or len(numbers)
    waiting = list(numbers)
    running: dict[UUID, tuple[int, float]] = {}
    done: dict[int, DistrictSummary] = {}
    while waiting or running:
        while waiting and len(running) < limit:
            number = waiting.pop(0)
            running[start_district(number, names, max_keys)] = (number, time.monotonic())
        time.sleep(POLL_S)
        for run in read_runs(list(running)):
            number, started = running[run.id]
            seconds = time.monotonic() - started
            state = run.state
            if state is not None and state.type.value in TERMINAL:
                done[number] = read_district(
                    number, str(run.id), state.type.value, state.message, seconds
                )
            elif why := overdue(run, seconds, settings):
                cancel_run(run)
                done[number] = DistrictSummary(
                    number, district_name(number), error=why, run_id=str(run.id), seconds=seconds
                )
            else:
                continue
            running.pop(run.id)
            logger.info(
                "District %s: %s in %.1f s (%s left)",
                number,
                done[number].error or state.type.value,
                seconds,
                len(waiting) + len(running),
            )
    return [done[n] for n in numbers]


def start_district(number: int, names: list[str], max_keys: int) -> UUID:
    """Schedule one district's run on the work pool (returns at once)."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        get_settings().reconcile_district_deployment,
        parameters={"district": number, "objects": names, "max_keys": max_keys},
        timeout=0,
        as_subflow=True,
        flow_run_name=f"reconcile district {number}",
    )
    return run.id


def overdue(run: Any, seconds: float, settings: Any) -> str | None:
    """Why a district's run is given up on, or None while it may still finish."""
    if run.start_time is None and seconds > settings.reconcile_start_timeout_s:
        return (
            f"not started within {settings.reconcile_start_timeout_s:.0f} s: no worker "
            "picked the run up (is a worker running for the deployment's work pool, or "
            "python -m flows.serve?); the run was cancelled"
        )
    if seconds > settings.reconcile_district_timeout_s:
        return (
            f"still running after {settings.reconcile_district_timeout_s:.0f} s "
            "(SELECTIVE_SYNC_RECONCILE_DISTRICT_TIMEOUT_S); the run was cancelled"
        )
    return None


def cancel_run(run: Any) -> None:
    """Cancel a district's run: at once if it never started, else through its worker."""
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


def read_district(
    number: int, run_id: str, state: str, message: str | None, seconds: float
) -> DistrictSummary:
    """A district's summary from its run's table; a run that left none is its error."""
    with api_client(StoreUnavailable, "the reconciliation results") as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[district_key(number)]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]),
            ),
            limit=1,
        )
    if artifacts:
        import json

        data = artifacts[0].data
        rows = json.loads(data) if isinstance(data, str) else data
        try:
            return summary_from_table(rows, run_id, seconds)
        except (ValueError, KeyError, TypeError):
            pass
    why = first_line(message) if message else "no result"
    return DistrictSummary(
        number,
        district_name(number),
        error=f"run {state.lower()}: {why}",
        run_id=run_id,
        seconds=seconds,
    )


def district_name(number: int) -> str:
    return next((d.name for d in configured_districts(get_settings()) if d.number == number), "")


# ---------------------------------------------------------------- one district (child)


def _district_run_name() -> str:
    return f"reconcile district {flow_run.get_parameters().get('district')}"


@flow(name="reconcile-district", flow_run_name=_district_run_name, validate_parameters=True)
def reconcile_district(
    district: Annotated[int, title("District")],
    objects: Annotated[list[ObjectName], NoneAsEmpty, title("Objects")] = (),
    max_keys: Annotated[int, Field(ge=1), title("Most keys per object")] = DEFAULT_MAX_KEYS,
) -> DistrictReconciliation:
    """Reconcile one district: verify, selective-sync what differs, verify again.

    Args:
        district: District number.
        objects: Objects to reconcile (empty: every object in the registry, parents first).
        max_keys: At most this many keys are re-sent per object; the rest wait for the
            next run.
    """
    settings = get_settings()
    check_max_keys(max_keys)
    names = objects_in_order(objects or None)
    config = resolve_district(settings, district)
    authorise_reconciliation([config.number], "flow:reconcile-district")
    result = DistrictReconciliation(config.number, config.name)
    try:
        with district_lock(
            settings.resolved_state_url,
            config.number,
            settings.district_lock_timeout_s,
            holder=f"the reconciliation of district {config.number}",
            exclusive=True,
        ):
            reconcile_objects(result, names, max_keys)
    except Exception as exc:  # the lock could not be had, or the state is unreachable
        result.error = first_line(exc)
    if any(o.sync_run_id for o in result.objects):
        show_syncs_in_history(config.number)
    thresholds = AlertThresholds.from_settings(settings)
    emit_drift_event(reconcile_event(result, thresholds), return_state=True)
    create_table_artifact(
        key=district_key(config.number),
        table=district_table(result),
        description=(
            f"Reconciliation of district {config.number} {md_escape(config.name)}: "
            f"{sum(o.sent for o in result.objects):,} keys sent"
        ),
    )
    errors = ([result.error] if result.error else []) + [
        f"{o.object}: {o.error}" for o in result.objects if o.error
    ]
    if errors:
        raise ReconcileIncomplete(
            f"district {config.number} was not fully reconciled: " + "; ".join(errors)
        )
    return result


def reconcile_objects(district: DistrictReconciliation, names: list[str], max_keys: int) -> None:
    """Verify the district's objects, sync each one's differing keys, then run the
    Verification Summary once, so the stored summary (and its reports) show the district
    after the syncs."""
    logger = get_run_logger()
    number = district.district_number
    settings = get_settings()
    try:
        check_databases(resolve_district(settings, number).url, settings.resolved_state_url)
        futures = [verify_object_task.submit(name, number) for name in names]
        verifications = [f.result() for f in futures]
    except Exception as exc:
        district.error = f"verification failed: {first_line(exc)}"
        logger.error("District %s: %s", number, district.error)
        return
    for verification in verifications:
        plan = plan_object(verification, max_keys)
        entry = ObjectReconciliation(plan, (verification.distinct, verification.errors))
        district.objects.append(entry)
        if plan.leftover:
            logger.warning(
                "District %s %s: %s keys differ, sending %s; %s left over for the next run",
                number,
                plan.object,
                plan.differing,
                len(plan.keys),
                plan.leftover,
            )
        if plan.keys:
            sync_object(entry, number)
        logger.info(
            "District %s %s: %s sent, %s succeeded, %s failed",
            number,
            plan.object,
            entry.sent,
            entry.succeeded,
            entry.failed,
        )
    district.overall_accuracy_before = accuracy(
        sum(o.counts_before[0] for o in district.objects),
        sum(o.counts_before[1] for o in district.objects),
    )
    verify_after(district)


def verify_after(district: DistrictReconciliation) -> None:
    """The district's Verification Summary after the syncs (stored, with its reports);
    each object's figures after. A failure leaves only the after figures missing."""
    state = verification_summary(
        district=district.district_number,
        objects=[o.object for o in district.objects],
        requested_by=REQUESTER,
        return_state=True,
    )
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, BaseException):
        # The syncs stand; only the after figures are missing until the next verification.
        get_run_logger().warning(
            "District %s: the verification after the syncs failed: %s",
            district.district_number,
            summary,
        )
        return
    after = {v.object: v for v in summary.objects}
    for entry in district.objects:
        verification = after.get(entry.object)
        if verification is not None:
            entry.counts_after = (verification.distinct, verification.errors)


def show_syncs_in_history(district: int) -> None:
    """Rewrite the district's View History table once for all of this run's syncs (they
    leave it to this run: see ``flows.sync_request.nightly_subflow``); best effort, the
    next write catches up."""
    try:
        refresh_table(district)
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


def sync_object(entry: ObjectReconciliation, district: int) -> None:
    """Run one selective sync (a history entry of its own) for the planned keys."""
    state = selective_sync(
        object=entry.object,
        ids=entry.plan.keys,
        requested_by=REQUESTER,
        district=district,
        check_dependencies=True,
        return_state=True,
    )
    run_id = state.state_details.flow_run_id
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException):
        entry.sync_run_id = str(run_id) if run_id else None
        entry.error = str(outcome) or type(outcome).__name__
        get_run_logger().error("District %s %s: %s", district, entry.object, entry.error)
        return
    entry.record(outcome, str(run_id) if run_id else None)
