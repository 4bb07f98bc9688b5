"""The nightly's district task: one district reconciled in this process, then shown.

The work is the core's (``selective_sync.reconcile_run``); this task names it in the
Prefect UI (a task run per district, its logs), and shows what came out: the district's
``reconcile-district-<n>`` table, its Verification Summary after the syncs as the UI's
summary artifacts, and the drift events the alert automations watch. No report is made.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from prefect.states import Failed

from selective_sync.alerts import (
    AlertThresholds,
    previous_counts,
    reconcile_event,
    verification_event,
)
from selective_sync.reconcile import (
    DistrictReconciliation,
    district_key,
    district_table,
)
from selective_sync.reconcile_run import DistrictNight, reconcile_district
from selective_sync.settings import get_settings
from selective_sync.text import first_line, md_escape

from .alerts import emit_drift
from .verify import show_summary


@task(
    name="reconcile_district",
    task_run_name="reconcile-district-{district}",
    cache_policy=NO_CACHE,
)
def reconcile_district_task(district: int, objects: list[str], max_keys: int):
    """Reconcile one district: verify, sync what differs, store the summary after."""
    settings = get_settings()
    run_id = str(task_run.get_id() or uuid4())
    night = reconcile_district(settings, district, objects, max_keys, run_id)
    result = night.reconciliation
    log_night(result)
    show_night(night)
    errors = result.errors
    if errors:
        # Failed, with the figures still the run's result (the caller reports them).
        return Failed(
            message=f"district {result.district_number} was not fully reconciled: "
            + "; ".join(errors),
            data=result,
        )
    return result


def log_night(result: DistrictReconciliation) -> None:
    """One line per object in the task run's log (the core's own log is not sent)."""
    logger = get_run_logger()
    if result.error:
        logger.error("District %s: %s", result.district_number, result.error)
    for o in result.objects:
        if o.leftover:
            logger.warning(
                "%s: %s keys differ, %s sent; %s left over for the next run",
                o.object,
                o.plan.differing,
                o.sent,
                o.leftover,
            )
        logger.info(
            "%s: %s sent, %s succeeded, %s failed%s",
            o.object,
            o.sent,
            o.succeeded,
            o.failed,
            f" (Sync History entry {o.sync_run_id})" if o.sync_run_id else "",
        )
        if o.error:
            logger.error("%s: %s", o.object, o.error)


def show_night(night: DistrictNight) -> None:
    """The district's table (what the nightly reads back), its summary after the syncs
    (the UI's artifacts) and its drift events: the reconciliation's, and the Verification
    Summary's it stored. The summary and the events are shown on a best-effort basis: the
    syncs and the stored summary stand either way."""
    result = night.reconciliation
    thresholds = AlertThresholds.from_settings(get_settings())
    if night.summary is not None and night.stored is not None:
        summary, stored = night.summary, night.stored
        verified = {o.object for o in summary.objects}
        before = [r for r in night.previous or [] if r["object"] in verified]
        best_effort(
            "The Verification Summary's artifacts",
            lambda: show_summary(summary, stored, night.issue_chunks, night.previous),
        )
        best_effort(
            "The Verification Summary's drift event",
            lambda: emit_drift(verification_event(summary, previous_counts(before), thresholds)),
        )
    best_effort(
        "The reconciliation's drift event",
        lambda: emit_drift(reconcile_event(result, thresholds)),
    )
    create_table_artifact(
        key=district_key(result.district_number),
        table=district_table(result),
        description=(
            f"Reconciliation of district {result.district_number} "
            f"{md_escape(result.district_name)}: {sum(o.sent for o in result.objects):,} keys sent"
        ),
    )


def best_effort(what: str, show: Callable[[], object]) -> None:
    try:
        show()
    except Exception as exc:  # the API hiccuped: the night's record is in the database
        get_run_logger().warning("%s could not be written: %s", what, first_line(exc))
