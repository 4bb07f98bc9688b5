"""The Sync History: one entry per run of the ``selective-sync`` flow.

An entry is built from what the Prefect API keeps about the run (its state, parameters and
times) and from the run's artifacts (the markdown summary, the per-key outcome table and the
progress). This module is plain data and formatting; it never imports Prefect, so the CLI
and the report renderers can use it cheaply. ``flows.history_store`` does the API access.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from selective_sync.errors import BadInput
from selective_sync.history.codec import outcomes_from_rows
from selective_sync.models import KeyOutcome, RequestStatus, SyncResult
from selective_sync.text import format_timestamp

FLOW_NAME = "selective-sync"

# Prefect state type -> the status a person sees in the history.
STATUS_BY_STATE = {
    "SCHEDULED": RequestStatus.PENDING,
    "PENDING": RequestStatus.PENDING,
    "RUNNING": RequestStatus.IN_PROGRESS,
    "PAUSED": RequestStatus.IN_PROGRESS,
    "CANCELLING": RequestStatus.IN_PROGRESS,
    "COMPLETED": RequestStatus.COMPLETE,
    "FAILED": RequestStatus.FAILED,
    "CRASHED": RequestStatus.CRASHED,
    "CANCELLED": RequestStatus.CANCELLED,
}
FINISHED = frozenset(s for s in RequestStatus if s.finished)
_PREFECT_PREFIXES = ("Flow run encountered an exception: ",)


def status_of(state_type: str | None) -> str:
    """The history status for a Prefect state type (``COMPLETED`` -> ``Complete``)."""
    name = str(state_type or "").rsplit(".", 1)[-1].upper()
    return STATUS_BY_STATE.get(name, name.title() or "Unknown")


@dataclass(frozen=True)
class RunFacts:
    """What the history needs from a flow run, as plain values."""

    id: str
    name: str
    state_type: str | None
    state_message: str | None
    parameters: dict[str, Any]
    requested_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class RunArtifacts:
    """The contents of a run's history artifacts (None for an artifact it never made)."""

    district: int | None = None
    summary: dict[str, str] | None = None
    rows: list[dict[str, Any]] | None = None
    progress: float | None = None


@dataclass
class HistoryEntry:
    """One Sync History entry: a selective sync request and what became of it."""

    run_id: str
    run_name: str
    requested_at: datetime | None
    requested_by: str
    status: str
    completed_at: datetime | None
    object: str
    keys: list[int]
    records_succeeded: int | None
    records_total: int
    district: int | None
    district_name: str | None
    check_dependencies: bool
    dry_run: bool
    # None when not loaded (a listing) or never published (the run ended before).
    outcomes: list[KeyOutcome] | None = None
    failure: str | None = None
    progress: float | None = None
    flow_run: bool = True
    """False for a request the command line or the nightly ran itself: no Prefect run of
    its own shows it."""
    origin: str | None = None
    """Where a request with no flow run came from: ``cli`` or ``nightly`` (the ledger's)."""

    @property
    def short_id(self) -> str:
        return self.run_id[:8]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def records(self) -> str:
        """``succeeded/total``; ``-/total`` while (or when) no outcome was recorded."""
        done = "-" if self.records_succeeded is None else str(self.records_succeeded)
        return f"{done}/{self.records_total}"

    def as_dict(self, with_outcomes: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "run_name": self.run_name,
            "status": self.status,
            "requested_at": _iso(self.requested_at),
            "requested_by": self.requested_by,
            "completed_at": _iso(self.completed_at),
            "object": self.object,
            "district": self.district,
            "district_name": self.district_name,
            "check_dependencies": self.check_dependencies,
            "dry_run": self.dry_run,
            "records": {"succeeded": self.records_succeeded, "total": self.records_total},
            "keys": self.keys,
            "progress": self.progress,
            "failure": self.failure,
        }
        if with_outcomes:
            data["outcomes"] = (
                None if self.outcomes is None else [k.as_dict() for k in self.outcomes]
            )
        return data

    def to_sync_result(self) -> SyncResult:
        """The request as a SyncResult, so reports can be made again from the history."""
        if self.outcomes is None:
            raise BadInput(f"history entry {self.short_id} holds no per-key outcomes")
        return SyncResult(
            object=self.object,
            district_number=self.district or 0,
            district_name=self.district_name or "",
            requested_by=self.requested_by,
            requested_at=self.requested_at,
            completed_at=self.completed_at,
            check_dependencies=self.check_dependencies,
            dry_run=self.dry_run,
            keys=list(self.outcomes),
        )


def build_entry(
    run: RunFacts, artifacts: RunArtifacts, default_district: int | None = None
) -> HistoryEntry:
    """The history entry of ``run``.

    The parameters always say what was asked (object, IDs, who, flags), even for a run that
    crashed before publishing anything; the artifacts say what happened; the run's state
    says how it ended. The district is the one in the artifact keys (what the run really
    used), else the parameter, else ``default_district`` (what ``None`` meant).
    """
    params = run.parameters or {}
    status = status_of(run.state_type)
    outcomes = outcomes_from_rows(artifacts.rows) if artifacts.rows is not None else None
    summary = artifacts.summary or {}
    if outcomes is not None:
        keys = [k.key for k in outcomes]
        succeeded: int | None = sum(1 for k in outcomes if k.outcome.succeeded)
        total = len(outcomes)
    else:
        keys = _requested_keys(params.get("ids"))
        succeeded, total = _records(summary.get("Records"), len(keys))
    district = artifacts.district or _int_or_none(params.get("district")) or default_district
    return HistoryEntry(
        run_id=run.id,
        run_name=run.name,
        requested_at=run.requested_at,
        requested_by=str(params.get("requested_by") or ""),
        status=status,
        completed_at=run.ended_at if status in FINISHED else None,
        object=str(getattr(params.get("object"), "value", params.get("object")) or ""),
        keys=keys,
        records_succeeded=succeeded,
        records_total=total,
        district=district,
        district_name=_district_name(summary.get("District"), district),
        check_dependencies=bool(params.get("check_dependencies", False)),
        dry_run=bool(params.get("dry_run", False)),
        outcomes=outcomes,
        failure=_failure(status, run.state_message),
        progress=artifacts.progress,
    )


# ---------------------------------------------------------------- display


def keys_text(keys: list[int], shown: int = 5) -> str:
    """``101, 102, 103 +7 more``: a short form of a request's keys for one table cell."""
    text = ", ".join(str(k) for k in keys[:shown])
    return text + (f" +{len(keys) - shown:,} more" if len(keys) > shown else "")


def status_text(entry: HistoryEntry) -> str:
    if entry.status == RequestStatus.IN_PROGRESS and entry.progress is not None:
        return f"In Progress ({entry.progress:.0f}%)"
    return entry.status


def detail_rows(entry: HistoryEntry) -> list[tuple[str, str]]:
    """The entry's detail as (name, value) rows, in the order the history shows them."""
    district = " ".join(str(p) for p in (entry.district, entry.district_name) if p)
    rows = [
        ("Run", f"{entry.run_id} ({entry.run_name})"),
        ("Status", status_text(entry)),
        ("Requested", format_timestamp(entry.requested_at)),
        ("Completed", format_timestamp(entry.completed_at)),
        ("Requested by", entry.requested_by),
        ("Object", entry.object),
        ("District", district),
        ("Keys", keys_text(entry.keys, shown=50)),
        ("Records", entry.records),
        ("Check dependencies", "yes" if entry.check_dependencies else "no"),
        ("Dry run", "yes" if entry.dry_run else "no"),
    ]
    if entry.failure:
        rows.append(("Failure", entry.failure))
    return rows


# ---------------------------------------------------------------- internals


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _requested_keys(ids: Any) -> list[int]:
    # Imported here: the sync core's package is not needed to read the history.
    from selective_sync.sync.keys import parse_ids

    # A request refused for bad IDs still is an entry; its failure message names them.
    try:
        return parse_ids(ids)
    except BadInput:
        return []


def _records(text: str | None, total: int) -> tuple[int | None, int]:
    done, _, of = (text or "").partition("/")
    if done.strip().isdigit() and of.strip().isdigit():
        return int(done), int(of)
    return None, total


def _district_name(text: str | None, district: int | None) -> str | None:
    number, _, name = (text or "").partition(" ")
    if number != str(district):
        return None
    return name.strip() or None


def _failure(status: str, message: str | None) -> str | None:
    if (
        status not in (RequestStatus.FAILED, RequestStatus.CRASHED, RequestStatus.CANCELLED)
        or not message
    ):
        return None
    for prefix in _PREFECT_PREFIXES:
        message = message.removeprefix(prefix)
    return message.strip()
