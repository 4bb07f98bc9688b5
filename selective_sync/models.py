"""Typed results that flow from the core to the flows, the CLI and the report renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from selective_sync.text import accuracy_hundredths

IssueKind = Literal["missing_at_state", "missing_at_district", "mismatched"]
ISSUE_KINDS: tuple[IssueKind, ...] = ("missing_at_state", "missing_at_district", "mismatched")
ISSUE_LABELS: dict[IssueKind, str] = {
    "missing_at_state": "Missing at state",
    "missing_at_district": "Missing at district",
    "mismatched": "Mismatched",
}
"""How an issue kind reads to a person: reports, tables and the run forms' choices."""


def accuracy(distinct: int, errors: int) -> float:
    """Accuracy in percent, (Distinct - Errors) / Distinct, rounded down to the hundredth
    (100 when Distinct is 0): the number ``--json`` shows, equal to what is printed."""
    return accuracy_hundredths(distinct, errors) / 100


@dataclass(frozen=True, slots=True)
class ColumnDiff:
    """One compared column that differs, with both sides' normalised values."""

    column: str
    district: Any
    state: Any


@dataclass(frozen=True, slots=True)
class RecordIssue:
    key: int
    issue: IssueKind
    diffs: tuple[ColumnDiff, ...] = ()


@dataclass
class ObjectVerification:
    """Verification of one object for one district (all keys, or the keys asked for)."""

    object: str
    district_number: int
    verified_at: datetime
    at_district: int
    at_state: int
    missing_at_state: list[int] = field(default_factory=list)
    missing_at_district: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    issues: list[RecordIssue] = field(default_factory=list)
    keys_requested: int | None = None

    @property
    def errors(self) -> int:
        return len(self.missing_at_state) + len(self.missing_at_district) + len(self.mismatched)

    @property
    def distinct(self) -> int:
        # Keys in either side = at district + keys only at the state.
        return self.at_district + len(self.missing_at_district)

    @property
    def accuracy(self) -> float:
        return accuracy(self.distinct, self.errors)


@dataclass
class DistrictVerification:
    """The Verification Summary of one district: every object asked for."""

    district_number: int
    district_name: str
    objects: list[ObjectVerification]

    @property
    def distinct(self) -> int:
        return sum(o.distinct for o in self.objects)

    @property
    def errors(self) -> int:
        return sum(o.errors for o in self.objects)

    @property
    def overall_accuracy(self) -> float:
        return accuracy(self.distinct, self.errors)


class RequestStatus(StrEnum):
    """A Sync History entry's status, as a person reads it."""

    PENDING = "Pending"
    IN_PROGRESS = "In Progress"
    COMPLETE = "Complete"
    FAILED = "Failed"
    CRASHED = "Crashed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self not in (RequestStatus.PENDING, RequestStatus.IN_PROGRESS)


class Outcome(StrEnum):
    SYNCED = "synced"
    UNCHANGED = "unchanged"
    NOT_FOUND = "not_found"
    FAILED = "failed"

    @property
    def succeeded(self) -> bool:
        return self in (Outcome.SYNCED, Outcome.UNCHANGED)


@dataclass(frozen=True)
class RowChange:
    """A planned or applied change of one state row (dry-run plans list these)."""

    table: str
    row_id: int
    action: Literal["insert", "update", "delete"]
    columns: tuple[ColumnDiff, ...] = ()


@dataclass
class KeyOutcome:
    key: int
    outcome: Outcome
    reason: str | None = None
    attempts: int = 1
    parents_synced: list[str] = field(default_factory=list)
    changes: list[RowChange] = field(default_factory=list)
    # True when the key failed on a database fault (not a refusal by the state).
    transient: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The key's outcome as plain data (``--json``, history entries)."""
        return {
            "key": self.key,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "attempts": self.attempts,
            "parents_synced": list(self.parents_synced),
        }


@dataclass
class SyncResult:
    """A whole selective sync request and every key's outcome."""

    object: str
    district_number: int
    district_name: str
    requested_by: str
    requested_at: datetime
    completed_at: datetime | None
    check_dependencies: bool
    dry_run: bool
    keys: list[KeyOutcome]

    @property
    def succeeded(self) -> int:
        return sum(1 for k in self.keys if k.outcome.succeeded)

    @property
    def total(self) -> int:
        return len(self.keys)
