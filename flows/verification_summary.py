"""The Verification Summary flow: per district and object, how far the state has drifted.

Each run stores the district's summary (merged: objects it did not verify keep their
earlier results and timestamps) and renders the reports of the summary as it now stands,
with each object's accuracy over the last runs. It returns what it verified itself.
"""

from __future__ import annotations

import contextlib
import getpass
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from flows.forms import DistrictNumber, NoneAsEmpty, OptionalText, district_or_default, title
from flows.verification_store import complete_summary, latest_rows, load_trend
from selective_sync.alerts import AlertThresholds, previous_counts, verification_event
from selective_sync.db import check_databases
from selective_sync.errors import SelectiveSyncError, StoredSummaryError
from selective_sync.models import DistrictVerification
from selective_sync.registry import ObjectName, object_names
from selective_sync.rights import Right, authorise
from selective_sync.settings import get_settings, resolve_district
from selective_sync.text import format_accuracy
from selective_sync.verification.codec import AccuracyTrend
from tasks.alerts import emit_drift_event
from tasks.reports import render_verification_reports
from tasks.verify import store_summary, verify_object_task


def _run_name() -> str:
    """E.g. "Verification Summary 275 by alice" (the district resolved when 0 or None)."""
    params = flow_run.get_parameters()
    number = params.get("district")
    # The flow itself reports a bad district; naming the run must not fail on it.
    with contextlib.suppress(Exception):
        number = resolve_district(get_settings(), district_or_default(number)).number
    by = params.get("requested_by")
    return f"Verification Summary {number} by {by}" if by else f"Verification Summary {number}"


@flow(
    name="verification-summary",
    flow_run_name=_run_name,
    validate_parameters=True,
)
def verification_summary(
    district: Annotated[DistrictNumber, title("District")] = 0,
    objects: Annotated[list[ObjectName], NoneAsEmpty, title("Objects")] = (),
    requested_by: Annotated[OptionalText, title("Requested by")] = "",
) -> DistrictVerification:
    """Verify district against state, store the district's summary and render its reports.

    Args:
        district: District number; 0 means the district this deployment serves.
        objects: Objects to verify; none chosen means every object. The others keep
            their stored results and timestamps.
        requested_by: Who asks (needs the R right); the report links are issued to this
            user. Left empty (the nightly schedule), the account running the flow.
    """
    logger = get_run_logger()
    settings = get_settings()
    if requested_by:
        authorise(requested_by, Right.R)
    config = resolve_district(settings, district_or_default(district))
    check_databases(config.url, settings.resolved_state_url)
    names = list(dict.fromkeys(str(o) for o in objects)) if objects else object_names()
    futures = [verify_object_task.submit(name, config.number) for name in names]
    summary = DistrictVerification(
        district_number=config.number,
        district_name=config.name,
        objects=[f.result() for f in futures],
    )
    logger.info(
        "District %s %s overall accuracy %s",
        config.number,
        config.name,
        format_accuracy(summary.distinct, summary.errors),
    )
    # Read before storing: the rows of objects this run does not verify are kept as stored.
    try:
        previous = latest_rows(config.number)
    except StoredSummaryError as exc:
        # An unreadable stored summary must not block storing a good one.
        logger.warning("Storing only the objects this run verified: %s", exc)
        previous = None
    rows = store_summary(quote(summary), config.number, flow_run.get_id(), previous)
    try:
        current = complete_summary(config.number, rows, summary)
        trend = load_trend(config.number)
    except SelectiveSyncError as exc:
        # An earlier run's issues are unreadable: this run's results are stored all the same.
        logger.warning("Reporting only the objects this run verified: %s", exc)
        current, trend = summary, None
    deliver_reports(current, trend, requested_by or getpass.getuser())
    drift = verification_event(
        current, previous_counts(previous), AlertThresholds.from_settings(settings)
    )
    emit_drift_event(drift, return_state=True)  # a failure to emit never fails the run
    return summary


def deliver_reports(summary: DistrictVerification, trend: AccuracyTrend | None, user: str) -> None:
    """Render and link the PDF, DOCX, CSV and XLSX; a failure is logged and the run stays Complete
    (the summary is stored; ``selective-sync summary --report`` rebuilds the reports)."""
    state = render_verification_reports(
        quote(summary), flow_run.get_id(), user, quote(trend), return_state=True
    )
    if state.is_failed():
        get_run_logger().error(
            "The Verification Summary reports could not be made: %s", state.message
        )
