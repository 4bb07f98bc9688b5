"""Verification tasks: verify an object, store the district's Verification Summary (in the
state database, and as the artifacts the UI shows)."""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate

from selective_sync.models import DistrictVerification, ObjectVerification
from selective_sync.registry import get_object
from selective_sync.settings import get_settings, resolve_district
from selective_sync.verification.codec import (
    IssueChunk,
    encode_summary,
    issues_key,
    merge_rows,
    summary_description,
    summary_key,
)
from selective_sync.verification.engine import verify_object
from selective_sync.verification.records import store_encoded
from selective_sync.verification.store import DatabaseSummaryStore

from .engines import engine_for
from .retry import RETRY_TRANSIENT_FAULTS


@task(
    name="verify_object",
    task_run_name="verify-{object_name}-{district}",
    cache_policy=NO_CACHE,
    **RETRY_TRANSIENT_FAULTS,
)
def verify_object_task(
    object_name: str, district: int, keys: list[int] | None = None
) -> ObjectVerification:
    """Verify one object for one district (every key, or the keys given)."""
    settings = get_settings()
    config = resolve_district(settings, district)
    return verify_object(
        engine_for(config.url),
        engine_for(settings.resolved_state_url),
        get_object(object_name),
        config.number,
        keys,
        chunk_rows=settings.verify_chunk_rows,
    )


@task(name="store_summary", task_run_name="store-summary-{district}", cache_policy=NO_CACHE)
def store_summary(
    summary: DistrictVerification,
    district: int,
    run_id: str,
    previous: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Store the verified objects' results in the state database (the record), then show
    them as artifacts: their record issues, and the merged summary table (the summary
    ``previous`` holds, this run's objects in place); returns its rows."""
    logger = get_run_logger()
    rows, chunks = encode_summary(summary, run_id)
    with DatabaseSummaryStore(get_settings()).engine() as engine:
        store_encoded(engine, district, rows, chunks)
    merged = show_summary(summary, rows, chunks, previous)
    logger.info(
        "Stored the Verification Summary of district %s: %s objects verified, %s issue rows "
        "in %s chunks (largest %s bytes)",
        district,
        len(rows),
        sum(c.rows for c in chunks),
        len(chunks),
        max((c.size_bytes for c in chunks), default=0),
    )
    return merged


def show_summary(
    summary: DistrictVerification,
    rows: list[dict[str, Any]],
    chunks: list[IssueChunk],
    previous: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Show a stored summary (``rows``, ``chunks``: its encoding) as the UI's artifacts: the
    record issues, then the summary table (``previous`` with this run's objects in place);
    returns the table's rows. Called inside a flow or task run."""
    district = summary.district_number
    # Issues first: a summary row never refers to issues that are not stored yet.
    for chunk in chunks:
        create_table_artifact(
            key=issues_key(district),
            table=chunk.table,
            description=f"{chunk.description} (verification of district {district})",
        )
    merged = merge_rows(previous, rows)
    create_table_artifact(
        key=summary_key(district),
        table=merged,
        description=summary_description(summary.district_name, district, merged),
    )
    return merged


@task(name="settle_summary", task_run_name="settle-summary-{district}", cache_policy=NO_CACHE)
def settle_summary(rows: list[dict[str, Any]], district: int, district_name: str) -> None:
    """Store ``rows`` (the district's current summary, read back after concurrent runs) as
    the summary's latest version, the one the UI shows. Attached to no run: it is no
    verification of its own, and the trend skips it."""
    with get_client(sync_client=True) as client:
        client.create_artifact(
            artifact=ArtifactCreate(
                key=summary_key(district),
                type="table",
                data=json.dumps(rows),
                description=(
                    summary_description(district_name, district, rows)
                    + " (settled after concurrent runs)"
                ),
            )
        )
    get_run_logger().info(
        "Another run stored the Verification Summary of district %s at the same time: "
        "stored the newest result of each object as its latest version",
        district,
    )
