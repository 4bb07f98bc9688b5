"""A run's reports in the report storage, linked from the run's artifacts.

A selective sync only links its Sync Request History (PDF, DOCX): the report server makes
each the first time its link is opened, from the ledger (``selective_sync.reports.on_demand``).
The Verification Summary's reports are rendered by the run that verified."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE

from selective_sync.models import DistrictVerification, SyncResult
from selective_sync.reports import verification_report_from_result
from selective_sync.reports.storage import (
    SYNC_FORMATS,
    VERIFICATION_FORMATS,
    ReportLink,
    StoredReport,
    report_links,
    store_reports,
)
from selective_sync.text import md_escape
from selective_sync.verification.codec import AccuracyTrend
from selective_sync.verification.state import StateSummary

SERVER_HINT = "served by `selective-sync reports serve`"
ON_DEMAND_HINT = "made when first opened, then kept"


def _link_artifacts(
    links: list[ReportLink], key_prefix: str, district: int | str, what: str, hint: str = ""
) -> None:
    for link in links:
        create_link_artifact(
            key=f"{key_prefix}-{link.ref.fmt}-{district}",
            link=link.url,
            link_text=link.ref.title,
            description=f"{md_escape(what)} ({link.ref.fmt.upper()}), {hint}{SERVER_HINT}",
        )


def _link_list(links: list[ReportLink]) -> str:
    # Links a person can open, not the server's file paths.
    return ", ".join(f"{link.ref.fmt.upper()} {link.url}" for link in links)


def link_sync_reports(result: SyncResult, run_id: str) -> list[str]:
    """Link the run's Sync Request History (PDF, DOCX) from its artifacts, unrendered: the
    report server makes each when its link is first opened. Returns the URLs."""
    refs = [StoredReport.sync(run_id, fmt) for fmt in SYNC_FORMATS]
    links = report_links(refs, result.requested_by)
    _link_artifacts(
        links,
        "sync-report",
        result.district_number,
        f"Sync Request History of the {result.object} sync by {result.requested_by}",
        f"{ON_DEMAND_HINT}, ",
    )
    get_run_logger().info("Reports: %s", _link_list(links))
    return [link.url for link in links]


@task(
    name="render_verification_reports",
    task_run_name="render-verification-reports",
    cache_policy=NO_CACHE,
)
def render_verification_reports(
    summary: DistrictVerification, run_id: str, user: str, trend: AccuracyTrend | None = None
) -> list[str]:
    """Render the Verification Summary as PDF, DOCX, CSV and XLSX, store and link them."""
    logger = get_run_logger()
    report = verification_report_from_result(summary, datetime.now(UTC), trend)
    number = summary.district_number
    refs = [StoredReport.verification(number, run_id, fmt) for fmt in VERIFICATION_FORMATS]
    links = store_reports(report, refs, user)
    _link_artifacts(
        links, "verification-report", number, f"Verification Summary of district {number}"
    )
    logger.info("Reports: %s", _link_list(links))
    return [link.url for link in links]


@task(
    name="render_state_reports",
    task_run_name="render-state-reports",
    cache_policy=NO_CACHE,
)
def render_state_reports(summary: StateSummary, run_id: str, user: str, trend=None) -> list[str]:
    """Render the state's Verification Summary as PDF and DOCX, store them, link them."""
    from selective_sync.reports.state import state_report

    report = state_report(summary, datetime.now(UTC), trend)
    refs = [StoredReport.state(run_id, fmt) for fmt in SYNC_FORMATS]
    links = store_reports(report, refs, user)
    _link_artifacts(links, "verification-report", "state", "Verification Summary of every district")
    get_run_logger().info("Reports stored: %s", ", ".join(str(link.path) for link in links))
    return [link.url for link in links]
