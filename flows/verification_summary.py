"""The Verification Summary flow: per district and object, how far the state has drifted."""

from __future__ import annotations

import getpass

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from selective_sync.db import check_schema, make_engine
from selective_sync.districts import resolve_district
from selective_sync.models import DistrictVerification
from selective_sync.registry import ObjectName, object_names
from selective_sync.rights import Right, require
from selective_sync.settings import get_settings
from selective_sync.summary_format import md_cell, percent
from tasks.reports import render_verification_reports
from tasks.verify import verify_object_task


@flow(
    name="verification-summary",
    flow_run_name="Verification Summary {district}",
    validate_parameters=True,
)
def verification_summary(
    district: int | None = None,
    objects: list[ObjectName] | None = None,
    requested_by: str | None = None,
) -> DistrictVerification:
    """Verify district against state for every object and publish the summary and reports.

    Args:
        district: District number (default: the configured district).
        objects: Objects to verify (default: every object in the registry).
        requested_by: Who asks; when given, needs the R right, and the report links are
            issued to this user. Default: the account running the flow.
    """
    logger = get_run_logger()
    settings = get_settings()
    if requested_by is not None:
        require(requested_by, Right.R)
    config = resolve_district(settings, district)
    for url, side in ((config.url, "district"), (settings.resolved_state_url, "state")):
        engine = make_engine(url)
        try:
            check_schema(engine, side)
        finally:
            engine.dispose()
    names = [str(o) for o in objects] if objects else object_names()
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
        percent(summary.overall_accuracy),
    )
    create_markdown_artifact(
        key=f"verification-summary-{config.number}",
        markdown=summary_markdown(summary),
        description=f"Verification Summary of district {config.number}",
    )
    deliver_reports(summary, requested_by or getpass.getuser())
    return summary


def deliver_reports(summary: DistrictVerification, user: str) -> None:
    """Render and link the PDF, DOCX and CSV; a failure is logged and the run stays Complete
    (the summary artifact holds the figures; ``selective-sync summary --report`` rebuilds)."""
    state = render_verification_reports(quote(summary), flow_run.get_id(), user, return_state=True)
    if state.is_failed():
        get_run_logger().error(
            "The Verification Summary reports could not be made: %s", state.message
        )


def summary_markdown(summary: DistrictVerification) -> str:
    lines = [
        f"# Verification Summary: {summary.district_number} {md_cell(summary.district_name)}",
        "",
        f"Overall accuracy: **{percent(summary.overall_accuracy)}**",
        "",
        "| Object | Accuracy | Timestamp | Distinct | At District | At State | Errors "
        "| Missing at state | Missing at district | Mismatched |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in summary.objects:
        lines.append(
            f"| {o.object} | {percent(o.accuracy)} | {o.verified_at:%Y-%m-%d %H:%M:%S} UTC "
            f"| {o.distinct} | {o.at_district} | {o.at_state} | {o.errors} "
            f"| {len(o.missing_at_state)} | {len(o.missing_at_district)} | {len(o.mismatched)} |"
        )
    return "\n".join(lines)
