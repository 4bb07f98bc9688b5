"""The stored Verification Summary in the Prefect API: the latest results and their history.

Each ``verification-summary`` run stores the district's summary as keyed artifacts (see
``selective_sync.summary_store`` for the layout and why the record issues are chunked).
This module reads them back: the latest summary in full (figures, key lists, record issues,
each object's ``verified_at``), or each object's accuracy over the last runs, which needs
only the small summary tables. ``user``, when given, must hold R; the CLI always passes it,
and code that has already authorised its caller (the flow itself) leaves it out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
from selective_sync.rights import Actor, Right, authorise
from selective_sync.settings import configured_districts, get_settings
from selective_sync.verification.codec import (
    AccuracyTrend,
    check_rows,
    decode_summary,
    issues_key,
    summary_key,
    trend_from_summaries,
)
from selective_sync.verification.state import StateSummary, state_summary, state_trend

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

DEFAULT_TREND_RUNS = 10


def load_latest_summary(
    district: int, *, user: str | Actor | None = None
) -> DistrictVerification | None:
    """The district's stored summary in full; None when nothing is stored yet.

    Objects verified by earlier runs than the latest keep their own results and
    ``verified_at``. Needs R when ``user`` is given.
    """
    if user is not None:
        authorise(user, Right.R)
    with _client() as client:
        rows = _latest_rows(client, district)
        if rows is None:
            return None
        return _complete(client, district, rows)


def load_trend(
    district: int, runs: int = DEFAULT_TREND_RUNS, *, user: str | Actor | None = None
) -> AccuracyTrend:
    """Each object's accuracy in the district's last ``runs`` verification runs, oldest
    first (only the small summary tables are read). Needs R when ``user`` is given."""
    if user is not None:
        authorise(user, Right.R)
    if runs < 1:
        raise BadInput("the trend needs at least 1 run")
    with _client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=_filter(summary_key(district)),
            sort=ArtifactSort.CREATED_DESC,
            limit=min(runs, PAGE),
        )
    summaries = [(str(a.flow_run_id), _data(a.data)) for a in reversed(artifacts)]
    return trend_from_summaries(district, summaries)


def latest_rows(district: int) -> list[dict[str, Any]] | None:
    """The rows of the district's stored summary table; None when nothing is stored yet."""
    with _client() as client:
        return _latest_rows(client, district)


def complete_summary(
    district: int, rows: Sequence[dict[str, Any]], known: DistrictVerification
) -> DistrictVerification:
    """The summary ``rows`` describe: the objects of ``known`` as they are, the others'
    record issues read back from the runs that verified them."""
    have = {o.object: o for o in known.objects}
    missing = [r for r in rows if r["object"] not in have]
    if missing:
        with _client() as client:
            stored = {o.object: o for o in _complete(client, district, missing).objects}
        have.update((name, o) for name, o in stored.items() if name not in have)
    objects = [have[r["object"]] for r in rows]
    return DistrictVerification(known.district_number, known.district_name, objects)


def load_state_summary(*, user: str | Actor | None = None) -> StateSummary:
    """The state's view: every configured district's stored figures (one API call for the
    latest summary table of each), worst district first. Needs R when ``user`` is given."""
    if user is not None:
        authorise(user, Right.R)
    districts = [(d.number, d.name) for d in configured_districts(get_settings())]
    keys = {summary_key(n): n for n, _name in districts}
    stored: dict[int, list[dict[str, Any]]] = {}
    names = list(keys)
    with _client() as client:
        for start in range(0, len(names), PAGE):
            latest = client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=names[start : start + PAGE]),
                    type=ArtifactCollectionFilterType(any_=["table"]),
                ),
                limit=PAGE,
            )
            for collection in latest:
                stored[keys[collection.key]] = check_rows(_data(collection.data))
    return state_summary(districts, stored)


def load_state_trend(
    days: int = DEFAULT_TREND_RUNS, *, user: str | Actor | None = None
) -> AccuracyTrend:
    """The state's overall accuracy at the end of each of the last ``days`` days with
    results (every district's last runs are read). Needs R when ``user`` is given."""
    if user is not None:
        authorise(user, Right.R)
    numbers = [d.number for d in configured_districts(get_settings())]
    return state_trend((load_trend(n, days) for n in numbers), days)


# ---------------------------------------------------------------- reading


def _client():
    return api_client(StoreUnavailable, "the Verification Summary")


def _filter(key: str, run_ids: list[UUID] | None = None) -> ArtifactFilter:
    # Type table only: before the summary was stored as a table, its key held markdown.
    return ArtifactFilter(
        key=ArtifactFilterKey(any_=[key]),
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


def _latest_rows(client: SyncPrefectClient, district: int) -> list[dict[str, Any]] | None:
    latest = client.read_artifacts(
        artifact_filter=_filter(summary_key(district)), sort=ArtifactSort.CREATED_DESC, limit=1
    )
    return check_rows(_data(latest[0].data)) if latest else None


def _complete(
    client: SyncPrefectClient, district: int, rows: Sequence[dict[str, Any]]
) -> DistrictVerification:
    """Rows plus their record issues, each object's from the run that verified it."""
    runs = sorted({str(r["issues_run"]) for r in rows if r["issue_rows"]})
    tables: dict[str, list[Any]] = {run: [] for run in runs}
    if runs:
        artifact_filter = _filter(issues_key(district), [UUID(run) for run in runs])
        for artifact in read_all_artifacts(client, artifact_filter):
            tables[str(artifact.flow_run_id)].append(_data(artifact.data))
    return decode_summary(list(rows), tables)
