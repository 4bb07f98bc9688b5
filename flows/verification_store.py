"""The stored Verification Summary in the Prefect API: the latest results and their history.

Each ``verification-summary`` run stores the district's summary as keyed artifacts (see
``selective_sync.verification.codec`` for the layout and why the record issues are chunked).
This module reads them back: the current summary in full (figures, key lists, record
issues, each object's ``verified_at``), or each object's accuracy over the last runs, which
needs only the small summary tables. The current summary is each object's newest result
among the latest stored version and the versions stored around it (``codec.newest_rows``):
two runs at once never make an object read back older than its newest result. ``user``,
when given, must hold R on the district (on all districts for the state's view); the CLI
always passes it, and code that has already authorised its caller (the flow itself) leaves
it out.
"""

from __future__ import annotations

import json
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
from selective_sync.errors import BadInput, StoredSummaryError, StoreUnavailable
from selective_sync.models import DistrictVerification
from selective_sync.rights import ALL_DISTRICTS, Actor, Right, authorise
from selective_sync.settings import configured_districts, get_settings
from selective_sync.verification.codec import (
    AccuracyTrend,
    check_rows,
    decode_summary,
    issues_key,
    newest_rows,
    read_back_from,
    summary_key,
    trend_from_summaries,
)
from selective_sync.verification.state import StateSummary, state_summary, state_trend

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

DEFAULT_TREND_RUNS = 10
ENTRY_POINT = "api:verification"
"""Where a caller that passes a user name (not an authorised Actor) acts from."""
FIRST_PAGE = 10
"""Versions read in the first call of one district's read-back (most have one or two)."""


def load_latest_summary(
    district: int, *, user: str | Actor | None = None
) -> DistrictVerification | None:
    """The district's current stored summary in full; None when nothing is stored yet.

    Each object has its newest stored result, with its own ``verified_at`` (objects
    verified by earlier runs than the latest keep theirs). Needs R on the district when
    ``user`` is given.
    """
    if user is not None:
        authorise(
            user,
            Right.R,
            district,
            entry_point=ENTRY_POINT,
            asked=f"read the Verification Summary of district {district}",
        )
    with _client() as client:
        rows = _current_rows(client, district)
        if rows is None:
            return None
        return _complete(client, district, rows)


def load_trend(
    district: int, runs: int = DEFAULT_TREND_RUNS, *, user: str | Actor | None = None
) -> AccuracyTrend:
    """Each object's accuracy in the district's last ``runs`` verification runs, oldest
    first (only the small summary tables are read). Needs R on the district when ``user``
    is given."""
    if user is not None:
        authorise(
            user,
            Right.R,
            district,
            entry_point=ENTRY_POINT,
            asked=f"read the accuracy trend of district {district}",
        )
    if runs < 1:
        raise BadInput("the trend needs at least 1 run")
    summaries: list[tuple[str | None, Any]] = []
    found = 0
    with _client() as client:
        # Versions attached to no run (settled after concurrent runs) are no point of their own.
        for artifact in _newest_first(client, [summary_key(district)], min(runs + 1, PAGE)):
            if artifact.flow_run_id is not None:
                found += 1
            summaries.append((_run(artifact), _data(artifact.data)))
            if found >= runs:
                break
    return trend_from_summaries(district, summaries)


def latest_rows(district: int) -> list[dict[str, Any]] | None:
    """The rows of the district's current stored summary; None when nothing is stored yet."""
    with _client() as client:
        return _current_rows(client, district)


def stored_rows(district: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The district's current stored summary rows, and the rows of the latest stored
    version (the one the UI shows); None when nothing is stored yet."""
    with _client() as client:
        latest = _latest_versions(client, [summary_key(district)])
        if not latest:
            return None
        (artifact,) = latest.values()
        current = _read_back(client, latest)[summary_key(district)]
        return current, check_rows(_data(artifact.data))


def complete_summary(
    district: int, rows: Sequence[dict[str, Any]], known: DistrictVerification
) -> DistrictVerification:
    """The summary ``rows`` describe: the objects of ``known`` whose results the rows hold,
    as they are; the others' record issues read back from the runs that verified them."""
    at = {r["object"]: r["verified_at"] for r in rows}
    have = {o.object: o for o in known.objects if at.get(o.object) == o.verified_at.isoformat()}
    missing = [r for r in rows if r["object"] not in have]
    if missing:
        with _client() as client:
            stored = {o.object: o for o in _complete(client, district, missing).objects}
        have.update((name, o) for name, o in stored.items() if name not in have)
    objects = [have[r["object"]] for r in rows]
    return DistrictVerification(known.district_number, known.district_name, objects)


def load_state_summary(*, user: str | Actor | None = None) -> StateSummary:
    """The state's view: every configured district's current stored figures (the latest
    summary table of each, one API call per 200 districts, and the versions stored around
    them), worst district first. Needs R on all districts when ``user`` is given."""
    if user is not None:
        authorise(
            user,
            Right.R,
            ALL_DISTRICTS,
            entry_point=ENTRY_POINT,
            asked="read the state's Verification Summary",
        )
    districts = [(d.number, d.name) for d in configured_districts(get_settings())]
    keys = {summary_key(n): n for n, _name in districts}
    stored: dict[int, list[dict[str, Any]]] = {}
    names = list(keys)
    with _client() as client:
        for start in range(0, len(names), PAGE):
            latest = _latest_versions(client, names[start : start + PAGE])
            for key, rows in _read_back(client, latest).items():
                stored[keys[key]] = rows
    return state_summary(districts, stored)


def load_state_trend(
    days: int = DEFAULT_TREND_RUNS, *, user: str | Actor | None = None
) -> AccuracyTrend:
    """The state's overall accuracy at the end of each of the last ``days`` days with
    results (every district's last runs are read). Needs R on all districts when ``user``
    is given."""
    if user is not None:
        authorise(
            user,
            Right.R,
            ALL_DISTRICTS,
            entry_point=ENTRY_POINT,
            asked="read the state's accuracy trend",
        )
    numbers = [d.number for d in configured_districts(get_settings())]
    return state_trend((load_trend(n, days) for n in numbers), days)


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
