"""Artifacts that make a selective sync run its Sync History entry."""

from __future__ import annotations

from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from selective_sync.history.codec import (
    history_key,
    history_markdown,
    outcome_rows,
)
from selective_sync.models import SyncResult
from selective_sync.sync.progress import report as report_progress
from selective_sync.text import md_escape


def start_progress(district_number: int, progress: float = 0.0) -> UUID:
    progress = min(progress, 100.0)
    artifact_id = create_progress_artifact(
        progress=progress,
        key=history_key(district_number, "progress"),
        description="Progress of the selective sync request",
    )
    report_progress(progress)
    return artifact_id


def update_progress(artifact_id: UUID, progress: float) -> None:
    progress = min(progress, 100.0)
    update_progress_artifact(artifact_id=artifact_id, progress=progress)
    report_progress(progress)


@task(name="publish_history", task_run_name="publish-history", cache_policy=NO_CACHE)
def publish_history(result: SyncResult, status: str | None = None) -> None:
    """Store the request's summary (``status`` overriding the outcomes') and per-key outcomes."""
    create_markdown_artifact(
        key=history_key(result.district_number),
        markdown=history_markdown(result, status),
        # Descriptions render as markdown in the UI: the user name must print literally.
        description=f"{result.object} sync by {md_escape(result.requested_by)}",
    )
    create_table_artifact(
        key=history_key(result.district_number, "outcomes"),
        table=outcome_rows(result),
        description=f"Per-key outcomes of the {result.object} sync",
    )
