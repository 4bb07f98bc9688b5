"""Scheduled reconciliation: verify every object of every district, then re-sync the drift."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import Field

from flows.forms import NoneAsEmpty, title
from flows.history_store import run_url
from flows.sync_request import selective_sync
from flows.verification_summary import verification_summary
from selective_sync.alerts import AlertThresholds, reconcile_event
from selective_sync.errors import ReconcileIncomplete, RightsError
from selective_sync.reconcile import (
    DEFAULT_MAX_KEYS,
    REQUESTER,
    DistrictReconciliation,
    ObjectReconciliation,
    ReconcileResult,
    check_max_keys,
    objects_in_order,
    plan_object,
    reconcile_markdown,
)
from selective_sync.registry import ObjectName
from selective_sync.rights import Right, authorise
from selective_sync.settings import configured_districts, get_settings, resolve_district
from tasks.alerts import emit_drift_event

ARTIFACT_KEY = "reconcile-summary"


def _run_name() -> str:
    """E.g. "Reconcile districts 275, 320" or "Reconcile all districts"."""
    chosen = flow_run.get_parameters().get("districts")
    if not chosen:
        return "Reconcile all districts"
    noun = "district" if len(chosen) == 1 else "districts"
    return f"Reconcile {noun} {', '.join(map(str, chosen))}"


@flow(name="reconcile", flow_run_name=_run_name, validate_parameters=True)
def reconcile(
    districts: Annotated[list[int], NoneAsEmpty, title("Districts")] = (),
    objects: Annotated[list[ObjectName], NoneAsEmpty, title("Objects")] = (),
    max_keys: Annotated[int, Field(ge=1), title("Most keys per object")] = DEFAULT_MAX_KEYS,
) -> ReconcileResult:
    """Verify, then selective-sync the keys that differ, for every district (nightly).

    Args:
        districts: District numbers; none given means every district configured here.
        objects: Objects to reconcile; none chosen means every object, parents first.
        max_keys: At most this many keys are re-sent per object and district; the rest are
            reported as left over and sent by the next run.
    """
    logger = get_run_logger()
    settings = get_settings()
    check_max_keys(max_keys)
    names = objects_in_order(objects)
    chosen = (
        [resolve_district(settings, n) for n in dict.fromkeys(districts)]
        if districts
        else configured_districts(settings)
    )
    authorise_reconciliation()
    thresholds = AlertThresholds.from_settings(settings)
    result = ReconcileResult(started_at=datetime.now(UTC), max_keys=max_keys)
    for config in chosen:
        district = DistrictReconciliation(config.number, config.name)
        result.districts.append(district)
        state = verification_summary(
            district=config.number, objects=names, requested_by=REQUESTER, return_state=True
        )
        summary = state.result(raise_on_failure=False)
        if isinstance(summary, BaseException):
            district.error = f"verification failed: {summary}"
            logger.error("District %s: %s", config.number, district.error)
            emit_drift_event(reconcile_event(district, thresholds), return_state=True)
            continue
        district.overall_accuracy_before = summary.overall_accuracy
        for verification in summary.objects:
            plan = plan_object(verification, max_keys)
            entry = ObjectReconciliation(
                plan, counts_before=(verification.distinct, verification.errors)
            )
            district.objects.append(entry)
            if plan.leftover:
                logger.warning(
                    "District %s %s: %s keys differ, sending %s; %s left over for the next run",
                    config.number,
                    plan.object,
                    plan.differing,
                    len(plan.keys),
                    plan.leftover,
                )
            if plan.keys:
                sync_object(entry, config.number)
            logger.info(
                "District %s %s: %s sent, %s succeeded, %s failed",
                config.number,
                plan.object,
                entry.sent,
                entry.succeeded,
                entry.failed,
            )
        reverify(district)
        emit_drift_event(reconcile_event(district, thresholds), return_state=True)
    result.completed_at = datetime.now(UTC)
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=reconcile_markdown(result, run_url),
        description="Scheduled reconciliation: what differed, what was re-sent, what is left",
    )
    if result.errors:
        raise ReconcileIncomplete(
            "reconciliation finished with errors (the rest was reconciled): "
            + "; ".join(result.errors)
        )
    return result


def reverify(district: DistrictReconciliation) -> None:
    """Verify again the objects that had keys sent, so the stored Verification Summary (and
    this run's table) shows the state after the syncs, not before them."""
    sent = [o for o in district.objects if o.sent]
    if not sent:
        return
    state = verification_summary(
        district=district.district_number,
        objects=[o.object for o in sent],
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
    after = {v.object: (v.distinct, v.errors) for v in summary.objects}
    for entry in sent:
        entry.counts_after = after.get(entry.object)


def authorise_reconciliation() -> None:
    """Refuse to start unless the reconciliation's requester holds W (nothing is read first)."""
    try:
        authorise(REQUESTER, Right.W)
    except RightsError as exc:
        raise RightsError(f"scheduled reconciliation cannot run: {exc}") from exc


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
