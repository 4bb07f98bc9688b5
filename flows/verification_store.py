"""The Verification Summary in the Prefect API: the UI's view of the stored summary.

The record is the state database (``selective_sync.verification.records``, read through
``DatabaseSummaryStore``). Each ``verification-summary`` run also shows the district's
summary as keyed table artifacts (see ``selective_sync.verification.codec`` for the layout);
this module holds what needs the API: the latest version the UI shows, read to keep it
current after concurrent runs (``stored_rows``), and the one-time import of summaries that
were stored as artifacts only, before the database held them (``import_artifacts``): their
current results with their record issues, and each run's own rows for the trend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactCollectionFilterType,
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    ArtifactFilterType,
)
from prefect.client.schemas.sorting import ArtifactSort

from flows.api_client import PAGE, api_client, read_all_artifacts
from selective_sync.errors import StoredSummaryError, StoreUnavailable
from selective_sync.models import DistrictVerification
from selective_sync.verification.codec import (
    check_rows,
    decode_summary,
    issue_chunks,
    issues_key,
    newest_rows,
    read_back_from,
    summary_key,
)
from selective_sync.verification.records import insert_result
from selective_sync.verification.store import DatabaseSummaryStore

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

log = logging.getLogger(__name__)

FIRST_PAGE = 10
"""Versions read in the first call of one district's read-back (most have one or two)."""


def stored_rows(
    district: int, store: DatabaseSummaryStore | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None] | None:
    """The district's current summary rows (from the state database) and the rows of the
    latest version the UI shows (None when it shows none); None when nothing is stored."""
    current = (store or DatabaseSummaryStore()).latest_rows(district)
    if current is None:
        return None
    with _client() as client:
        latest = _latest_versions(client, [summary_key(district)])
    shown = None
    if latest:
        (artifact,) = latest.values()
        shown = check_rows(_data(artifact.data))
    return current, shown


def import_artifacts(district: int, store: DatabaseSummaryStore | None = None) -> int:
    """Copy the district's summary stored as artifacts into the state database, once:
    only when the database holds nothing for the district. The current result of each
    object comes with its record issues; the earlier runs' own rows keep the trend.
    Returns how many results were copied (0: nothing to import)."""
    store = store or DatabaseSummaryStore()
    if store.has_results(district):
        return 0
    with _client() as client:
        rows = _current_rows(client, district)
        if rows is None:
            return 0
        current = _complete(client, district, rows)
        earlier = [
            row
            for artifact in _newest_first(client, [summary_key(district)])
            if artifact.flow_run_id is not None
            for row in check_rows(_data(artifact.data))
            if row["issues_run"] == str(artifact.flow_run_id)
        ]
    objects = {o.object: o for o in current.objects}
    now = {(r["object"], str(r["issues_run"])) for r in rows}
    copied: set[tuple[str, str]] = set()
    with store.engine() as engine, engine.begin() as conn:
        for row in earlier:
            key = (row["object"], str(row["issues_run"]))
            if key not in now and key not in copied:
                insert_result(conn, row, [])  # a trend point: its issues are not read again
                copied.add(key)
        for row in rows:
            tables = [c.table for c in issue_chunks(objects[row["object"]])]
            insert_result(conn, row, tables)
    log.info(
        "Imported the Verification Summary of district %s stored as artifacts: %s current "
        "results, %s earlier ones",
        district,
        len(rows),
        len(copied),
    )
    return len(rows) + len(copied)


# ---------------------------------------------------------------- reading


def _client():
    return api_client(StoreUnavailable, "the Verification Summary")


def _filter(keys: list[str], run_ids: list[UUID] | None = None) -> ArtifactFilter:
    # Type table only: before the summary was stored as a table, its key held markdown.
    return ArtifactFilter(
        key=ArtifactFilterKey(any_=keys),
        type=ArtifactFilterType(any_=["table"]),
        flow_run_id=ArtifactFilterFlowRunId(any_=run_ids) if run_ids is not None else None,
    )


def _data(data: Any) -> Any:
    # A table artifact's data is the JSON text of its table (prefect.artifacts.TableArtifact).
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError as exc:
            raise StoredSummaryError("a stored Verification Summary artifact is not JSON") from exc
    return data


def _run(artifact: Any) -> str | None:
    return None if artifact.flow_run_id is None else str(artifact.flow_run_id)


def _newest_first(client: SyncPrefectClient, keys: list[str], limit: int = PAGE) -> Iterator:
    """The summary tables stored under ``keys``, newest first, page by page."""
    offset = 0
    while True:
        page = client.read_artifacts(
            artifact_filter=_filter(keys),
            sort=ArtifactSort.CREATED_DESC,
            limit=limit,
            offset=offset,
        )
        yield from page
        if len(page) < limit:
            return
        offset += len(page)
        limit = PAGE


def _latest_versions(client: SyncPrefectClient, keys: list[str]) -> dict[str, Any]:
    """Each key's latest stored version (the one the UI shows), for at most PAGE keys."""
    latest = client.read_latest_artifacts(
        artifact_filter=ArtifactCollectionFilter(
            key=ArtifactCollectionFilterKey(any_=keys),
            type=ArtifactCollectionFilterType(any_=["table"]),
        ),
        limit=PAGE,
    )
    return {c.key: c for c in latest}


def _current_rows(client: SyncPrefectClient, district: int) -> list[dict[str, Any]] | None:
    return _read_back(client, _latest_versions(client, [summary_key(district)])).get(
        summary_key(district)
    )


def _read_back(client: SyncPrefectClient, latest: dict[str, Any]) -> dict[str, list[dict]]:
    """Each key's current rows: its latest version and every version created since the
    latest version's run read (``codec.read_back_from``), newest result per object.

    The versions of every key are read newest first in one stream; a key leaves the stream
    once a version of it older than its own start is seen, so a district last verified
    long ago costs no more than one that verified last night."""
    if not latest:
        return {}
    versions = {key: check_rows(_data(c.data)) for key, c in latest.items()}
    since = {key: read_back_from(versions[key], _run(c)) for key, c in latest.items()}
    around: dict[str, list[tuple[Any, list[dict[str, Any]]]]] = {key: [] for key in latest}
    seen: dict[str, set[UUID]] = {key: set() for key in latest}
    remaining = set(latest)
    limit = min(PAGE, max(FIRST_PAGE, 2 * len(latest)))
    while remaining:
        keys = sorted(remaining)
        page = client.read_artifacts(
            artifact_filter=_filter(keys),
            sort=ArtifactSort.CREATED_DESC,
            limit=limit,
            # Versions stored meanwhile push the stream down: some are read twice, none skipped.
            offset=sum(len(seen[key]) for key in keys),
        )
        fresh = 0
        for artifact in page:
            key = artifact.key
            if key not in remaining or artifact.id in seen[key]:
                continue
            fresh += 1
            seen[key].add(artifact.id)
            if artifact.created < since[key]:
                remaining.discard(key)
            elif artifact.id != latest[key].latest_id:
                around[key].append((artifact.created, check_rows(_data(artifact.data))))
        if len(page) < limit or not fresh:
            break
        limit = PAGE
    current = {}
    for key, rows in versions.items():
        # The UI's latest version first: on a tie of verified_at, its row is kept.
        newer = sorted(around[key], key=lambda a: a[0], reverse=True)
        current[key] = newest_rows([rows, *(r for _at, r in newer)])
    return current


def _complete(
    client: SyncPrefectClient, district: int, rows: Sequence[dict[str, Any]]
) -> DistrictVerification:
    """Rows plus their record issues, each object's from the run that verified it."""
    runs = sorted({str(r["issues_run"]) for r in rows if r["issue_rows"]})
    tables: dict[str, list[Any]] = {run: [] for run in runs}
    if runs:
        artifact_filter = _filter([issues_key(district)], [UUID(run) for run in runs])
        for artifact in read_all_artifacts(client, artifact_filter):
            tables[str(artifact.flow_run_id)].append(_data(artifact.data))
    return decode_summary(list(rows), tables)
