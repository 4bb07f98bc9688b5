"""The Verification Summary flow: per district and object, how far the state has drifted.

Each run stores the district's summary (merged: objects it did not verify keep their
earlier results and timestamps) and renders the reports of the summary as it now stands
(read back: another run storing at the same time loses nothing), with each object's
accuracy over the last runs. It returns what it verified itself.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from flows.acting import acting_user, display_user
from flows.forms import DistrictNumber, NoneAsEmpty, OptionalText, district_or_default, title
from flows.refusals import refused
from flows.verification_store import import_artifacts, stored_rows
from selective_sync.alerts import AlertThresholds, previous_counts, verification_event
from selective_sync.db import check_databases
from selective_sync.errors import SelectiveSyncError, StoredSummaryError
from selective_sync.models import DistrictVerification
from selective_sync.registry import ObjectName, object_names
from selective_sync.rights import ALL_DISTRICTS, Actor, Right, authorise
from selective_sync.settings import (
    DistrictConfig,
    Settings,
    configured_districts,
    get_settings,
    resolve_district,
)
from selective_sync.text import first_line, format_accuracy, format_timestamp
from selective_sync.verification.codec import AccuracyTrend
from selective_sync.verification.state import STATE_KEY, StateSummary, state_rows
from selective_sync.verification.store import DatabaseSummaryStore
from tasks.alerts import emit_drift_event
from tasks.reports import render_state_reports, render_verification_reports
from tasks.verify import settle_summary, store_summary, verify_object_task

ENTRY_POINT = "flow:verification-summary"
STATE_ASKED = "the state's Verification Summary (every district)"


def _run_name() -> str:
    """E.g. "Verification Summary 275 by alice" (the district resolved when 0 or None)."""
    params = flow_run.get_parameters()
    by = display_user(params)
    suffix = f" by {by}" if by else ""
    if params.get("all_districts"):
        return f"Verification Summary all districts{suffix}"
    number = params.get("district")
    # The flow itself reports a bad district; naming the run must not fail on it.
    with contextlib.suppress(Exception):
        number = resolve_district(get_settings(), district_or_default(number)).number
    return f"Verification Summary {number}{suffix}"


@flow(
    name="verification-summary",
    flow_run_name=_run_name,
    validate_parameters=True,
)
def verification_summary(
    district: Annotated[DistrictNumber, title("District")] = 0,
    objects: Annotated[list[ObjectName], NoneAsEmpty, title("Objects")] = (),
    requested_by: Annotated[OptionalText, title("Requested by")] = "",
    all_districts: Annotated[bool, title("All districts (the state's view)")] = False,
    reverify: Annotated[bool, title("Verify again (off: the stored results)")] = False,
) -> DistrictVerification | StateSummary:
    """Verify district against state, store the district's summary and render its reports.

    Args:
        district: District number; 0 means the district this deployment serves.
        objects: Objects to verify; none chosen means every object. The others keep
            their stored results and timestamps.
        requested_by: Who asks (needs the R right on the district, or on all districts
            for the state's view); the report links are issued to this user. Left empty
            only by the nightly schedule, which acts as the scheduled-reconciliation user.
        all_districts: The state's view instead: every configured district, worst first,
            then each district's objects (table artifact ``verification-summary-state``,
            PDF and DOCX reports).
        reverify: With all districts: verify every district again first (each district is
            a run of this flow); off, the stored results are shown (a district with none
            is verified). One district is always verified.
    """
    logger = get_run_logger()
    settings = get_settings()
    try:
        actor, config = authorise_summary(settings, requested_by, district, all_districts)
    except SelectiveSyncError as exc:
        return refused(exc)
    if config is None:
        return state_view(objects, actor.name, reverify)
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
    store = DatabaseSummaryStore(settings)
    import_once(config.number, store)
    # Read before storing: the previous figures (the drift alert), and the rows of the
    # objects this run does not verify, for the summary table the UI shows.
    try:
        previous = latest_rows(config.number)
    except StoredSummaryError as exc:
        # An unreadable stored summary must not block storing a good one.
        logger.warning("Storing only the objects this run verified: %s", exc)
        previous = None
    store_summary(quote(summary), config.number, flow_run.get_id(), previous)
    try:
        # Another run may have stored since this one read: the UI's latest version is made
        # to show the current summary (each object's newest result), read back from the
        # database with the record issues of the objects this run did not verify.
        settle(config.number, config.name)
        current = store.load_latest_summary(config.number, known=summary) or summary
        trend = store.load_trend(config.number)
    except SelectiveSyncError as exc:
        # An earlier run's issues are unreadable: this run's results are stored all the same.
        logger.warning("Reporting only the objects this run verified: %s", exc)
        current, trend = summary, None
    deliver_reports(current, trend, actor.name)
    drift = verification_event(
        current, previous_counts(previous), AlertThresholds.from_settings(settings)
    )
    emit_drift_event(drift, return_state=True)  # a failure to emit never fails the run
    return summary


def authorise_summary(
    settings: Settings, requested_by: str, district: int, all_districts: bool
) -> tuple[Actor, DistrictConfig | None]:
    """The acting user, holding R on the district asked for (its databases answering), or
    on all districts for the state's view (no district: None)."""
    user = acting_user(requested_by)
    if all_districts:
        actor = authorise(user, Right.R, ALL_DISTRICTS, entry_point=ENTRY_POINT, asked=STATE_ASKED)
        return actor, None
    config = resolve_district(settings, district_or_default(district))
    actor = authorise(
        user,
        Right.R,
        config.number,
        entry_point=ENTRY_POINT,
        asked=f"Verification Summary of district {config.number}",
    )
    check_databases(config.url, settings.resolved_state_url)
    return actor, config


def latest_rows(district: int) -> list[dict] | None:
    """The district's current stored summary rows (None: nothing stored yet)."""
    return DatabaseSummaryStore().latest_rows(district)


def import_once(district: int, store: DatabaseSummaryStore) -> int:
    """Copy a summary stored as artifacts before the database held it (once; best effort:
    a failure leaves the district's history to start with this run). Results copied."""
    try:
        return import_artifacts(district, store)
    except SelectiveSyncError as exc:
        get_run_logger().warning(
            "The summary stored as artifacts before could not be imported: %s", exc
        )
        return 0


SETTLE_ATTEMPTS = 5
"""How many times a run stores the current summary again while other runs keep storing."""


def settle(district: int, name: str) -> list[dict] | None:
    """The district's current summary rows (None if nothing is stored), after making the
    latest version, the one the UI shows, hold them. A run storing at the same time settles
    after its own store in the same way, so the last one to store leaves it right."""
    for _attempt in range(SETTLE_ATTEMPTS):
        stored = stored_rows(district)
        if stored is None:
            return None
        current, shown = stored
        if current == shown:
            return current
        settle_summary(current, district, name)
    get_run_logger().warning(
        "Other runs kept storing the Verification Summary of district %s: its latest "
        "version may lack some newer results until the next run (reading it gives them)",
        district,
    )
    return current


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


def state_view(objects: list[str] | None, requested_by: str, reverify: bool) -> StateSummary:
    """The state's Verification Summary: verify the districts that need it (all of them
    with ``reverify``), then one table artifact and the PDF/DOCX reports over every district."""
    logger = get_run_logger()
    store = DatabaseSummaryStore()
    stored = store.load_state_summary()
    # A summary stored as artifacts only (before the database held it) counts as stored.
    if sum(import_once(d.number, store) for d in stored.districts if not d.verified):
        stored = store.load_state_summary()
    todo = (
        [d.number for d in configured_districts(get_settings())]
        if reverify
        else [d.number for d in stored.districts if not d.verified]
    )
    for number in todo:
        state = verification_summary(
            district=number, objects=objects, requested_by=requested_by, return_state=True
        )
        if state.is_failed():
            # The others go on; this district shows its older results, or none.
            logger.error("District %s could not be verified: %s", number, first_line(state.message))
    summary = store.load_state_summary() if todo else stored
    create_table_artifact(
        key=STATE_KEY,
        table=state_rows(summary, format_accuracy, format_timestamp),
        description=(
            f"Verification Summary of {len(summary.districts):,} districts, worst first: "
            f"state overall accuracy {format_accuracy(summary.distinct, summary.errors)}"
        ),
    )
    trend = None
    try:
        trend = store.load_state_trend()
    except SelectiveSyncError as exc:
        logger.warning("The state's accuracy over time could not be read: %s", exc)
    done = render_state_reports(
        quote(summary),
        flow_run.get_id(),
        requested_by,
        quote(trend),
        return_state=True,
    )
    if done.is_failed():
        logger.error("The state's Verification Summary reports could not be made: %s", done.message)
    return summary
