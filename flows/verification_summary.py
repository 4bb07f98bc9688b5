"""The Verification Summary flow: per district and object, how far the state has drifted."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from selective_sync.db import check_schema, make_engine
from selective_sync.districts import resolve_district
from selective_sync.models import DistrictVerification
from selective_sync.registry import ObjectName, object_names
from selective_sync.settings import get_settings
from selective_sync.summary_format import md_cell, percent
from tasks.verify import verify_object_task


@flow(
    name="verification-summary",
    flow_run_name="Verification Summary {district}",
    validate_parameters=True,
)
def verification_summary(
    district: int | None = None, objects: list[ObjectName] | None = None
) -> DistrictVerification:
    """Verify district against state for every object and publish the summary.

    Args:
        district: District number (default: the configured district).
        objects: Objects to verify (default: every object in the registry).
    """
    logger = get_run_logger()
    settings = get_settings()
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
    return summary


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
