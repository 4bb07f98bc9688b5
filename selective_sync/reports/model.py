"""Report content models, built from the core's typed results (never from a database).

Both renderers (PDF and DOCX) take these models, so the two formats carry the same text in
the same order; every string a person reads is decided here, not in the renderers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from selective_sync.text import format_accuracy, format_timestamp
from selective_sync.verification.codec import AccuracyTrend
from selective_sync.verification.format import DISTRICT_COLUMNS, OBJECT_COLUMNS  # noqa: F401  (re-exported)

from ..models import ISSUE_LABELS, DistrictVerification, Outcome, RecordIssue, SyncResult
from ..registry import REGISTRY

# One timestamp format everywhere (reports, CSV): e.g. "11/28/2026 08:15 PM UTC".

SYNC_TITLE = "Sync Request History"
VERIFICATION_TITLE = "Verification Summary"

# Section headings; tests and readers find sections by these exact texts.
FAILED_HEADING = "IDs failed to process at District"
SUCCESSFUL_HEADING = "IDs successful"
NOT_FOUND_HEADING = "IDs not found (no change)"
PARENTS_HEADING = "Parents synced through check dependencies"
RECORD_ISSUES_HEADING = "Record issues"
TREND_HEADING = "Accuracy over time"
TREND_RUN_COLUMN = "Verified"
NOT_VERIFIED_TEXT = "-"

UNCHANGED_MARK = "*"
UNCHANGED_LEGEND = (
    f"{UNCHANGED_MARK} unchanged: the record was already identical at the state and was re-sent."
)
DRY_RUN_NOTICE = (
    "Dry run: nothing was written to the state database. "
    "The outcomes below are what the sync would have done."
)
NONE_TEXT = "None."
NO_REASON = "no reason given"
NULL_TEXT = "NULL"

ISSUE_COLUMNS = ("Key", "Issue", "Column", "District value", "State value")


def display_value(value: Any) -> str:
    """How a compared value prints: NULL for None, ISO dates, anything else as str()."""
    if value is None:
        return NULL_TEXT
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def district_line(number: int, name: str) -> str:
    """The running header line: ``<district number> <DISTRICT NAME> District``."""
    return f"{number} {name.upper()} District"


def heading_with_count(heading: str, count: int) -> str:
    return f"{heading} ({count:,})"


# --- Sync Request History ---------------------------------------------------------------


@dataclass(frozen=True)
class FailedId:
    key: int
    reason: str


@dataclass(frozen=True)
class SuccessfulId:
    key: int
    unchanged: bool = False

    @property
    def label(self) -> str:
        return f"{self.key}{UNCHANGED_MARK}" if self.unchanged else str(self.key)


@dataclass(frozen=True)
class ParentsSynced:
    key: int
    parents: tuple[str, ...]

    @property
    def text(self) -> str:
        return ", ".join(self.parents)


@dataclass
class SyncReport:
    """The Sync Request History report of one selective sync request."""

    district_number: int
    district_name: str
    object: str
    requested_by: str
    requested_at: dt.datetime
    completed_at: dt.datetime | None
    generated_at: dt.datetime
    dry_run: bool
    check_dependencies: bool
    failed: list[FailedId] = field(default_factory=list)
    successful: list[SuccessfulId] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)
    parents_synced: list[ParentsSynced] = field(default_factory=list)

    title = SYNC_TITLE

    @property
    def district_line(self) -> str:
        return district_line(self.district_number, self.district_name)

    @property
    def generated_line(self) -> str:
        return f"Generated on {format_timestamp(self.generated_at)}"

    @property
    def intro(self) -> str:
        return (
            f"The {self.object} sync performed on {format_timestamp(self.requested_at)} "
            f"by {self.requested_by} included the following IDs:"
        )

    @property
    def total(self) -> int:
        return len(self.failed) + len(self.successful) + len(self.not_found)

    @property
    def summary_line(self) -> str:
        done = (
            f"Completed on {format_timestamp(self.completed_at)}."
            if self.completed_at
            else "Not completed."
        )
        return f"Records succeeded: {len(self.successful):,}/{self.total:,}. {done}"

    @property
    def dry_run_notice(self) -> str | None:
        return DRY_RUN_NOTICE if self.dry_run else None

    @property
    def has_unchanged(self) -> bool:
        return any(s.unchanged for s in self.successful)

    @property
    def show_parents(self) -> bool:
        return self.check_dependencies or bool(self.parents_synced)


def sync_report_from_result(result: SyncResult, generated_at: dt.datetime) -> SyncReport:
    """The report content of one sync request; each section lists its IDs in ascending order."""
    failed: list[FailedId] = []
    successful: list[SuccessfulId] = []
    not_found: list[int] = []
    parents: list[ParentsSynced] = []
    for k in sorted(result.keys, key=lambda k: k.key):
        if k.outcome is Outcome.FAILED:
            failed.append(FailedId(k.key, k.reason or NO_REASON))
        elif k.outcome is Outcome.NOT_FOUND:
            not_found.append(k.key)
        else:
            successful.append(SuccessfulId(k.key, unchanged=k.outcome is Outcome.UNCHANGED))
        if k.parents_synced:
            parents.append(ParentsSynced(k.key, tuple(k.parents_synced)))
    return SyncReport(
        district_number=result.district_number,
        district_name=result.district_name,
        object=str(result.object),
        requested_by=result.requested_by,
        requested_at=result.requested_at,
        completed_at=result.completed_at,
        generated_at=generated_at,
        dry_run=result.dry_run,
        check_dependencies=result.check_dependencies,
        failed=failed,
        successful=successful,
        not_found=not_found,
        parents_synced=parents,
    )


# --- Verification Summary ---------------------------------------------------------------


@dataclass(frozen=True)
class ObjectRow:
    """One line of the per-object table, already formatted for print."""

    object: str
    accuracy: str
    timestamp: str
    distinct: int
    at_district: int
    at_state: int
    errors: int
    missing_at_state: int
    missing_at_district: int
    mismatched: int
    # The moment itself, for formats that hold dates (the workbook); ``timestamp`` prints it.
    verified_at: dt.datetime | None = None

    def cells(self) -> tuple[str, ...]:
        return (
            self.object,
            self.accuracy,
            self.timestamp,
            *(
                f"{n:,}"
                for n in (
                    self.distinct,
                    self.at_district,
                    self.at_state,
                    self.errors,
                    self.missing_at_state,
                    self.missing_at_district,
                    self.mismatched,
                )
            ),
        )


@dataclass(frozen=True)
class IssueLine:
    """One printed line of the record issues: one per differing column of a key."""

    key: int
    issue: str
    column: str
    district_value: str
    state_value: str

    def cells(self) -> tuple[str, ...]:
        return (str(self.key), self.issue, self.column, self.district_value, self.state_value)

    def typed_cells(self) -> tuple[int | str, ...]:
        """The cells with the key as a number (for a spreadsheet, where keys sort)."""
        return (self.key, self.issue, self.column, self.district_value, self.state_value)


@dataclass(frozen=True)
class ObjectIssues:
    """The record issues of one object (its key label heads the Key column)."""

    object: str
    key_label: str
    keys: int
    lines: tuple[IssueLine, ...]

    @property
    def heading(self) -> str:
        return f"{self.object}: {self.keys:,} keys with issues"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.key_label, *ISSUE_COLUMNS[1:])


@dataclass(frozen=True)
class TrendSeries:
    """One object's line: its accuracy in each run (None where a run did not verify it)."""

    object: str
    values: tuple[float | None, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class TrendChart:
    """Each object's accuracy over the last runs, oldest first: a chart in the PDF, a
    small table in the DOCX. Only made when there is more than one run."""

    heading: str
    run_dates: tuple[str, ...]
    run_times: tuple[str, ...]
    series: tuple[TrendSeries, ...]
    y_min: float
    y_max: float
    y_labels: tuple[tuple[float, str], ...]
    # Each run's verification time, as the dates and times above print it.
    run_moments: tuple[dt.datetime, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (TREND_RUN_COLUMN, *(s.object for s in self.series))

    def rows(self) -> list[tuple[str, ...]]:
        return [
            (f"{day} {time}", *(s.texts[i] for s in self.series))
            for i, (day, time) in enumerate(zip(self.run_dates, self.run_times, strict=True))
        ]


def _axis(values: list[float]) -> tuple[float, float]:
    """A y range that shows small changes near 100%: from a round step below the lowest
    point to 100."""
    low = min(values, default=100.0)
    for step in (0.1, 0.5, 1, 5, 10, 25):
        if 100 - low <= 4 * step:
            break
    bottom = max(0.0, step * int((low - 1e-9) // step)) if low < 100 else 100 - step
    return bottom, 100.0


def trend_chart(trend: AccuracyTrend | None) -> TrendChart | None:
    """The chart of ``trend``; None unless it holds at least two runs."""
    if trend is None or len(trend.runs) < 2:
        return None
    stamps = [format_timestamp(r.verified_at) for r in trend.runs]
    series = []
    for name in trend.objects:
        values: list[float | None] = []
        texts: list[str] = []
        for run in trend.runs:
            counts = run.counts.get(name)
            values.append(None if counts is None else run.accuracy[name])
            texts.append(NOT_VERIFIED_TEXT if counts is None else format_accuracy(*counts))
        series.append(TrendSeries(name, tuple(values), tuple(texts)))
    points = [v for s in series for v in s.values if v is not None]
    low, high = _axis(points)
    labels = tuple((v, f"{v:.2f}%") for v in (low, (low + high) / 2, high))
    return TrendChart(
        heading=f"{TREND_HEADING} (last {len(trend.runs)} runs)",
        run_dates=tuple(s.split(" ", 1)[0] for s in stamps),
        run_times=tuple(s.split(" ", 1)[1] for s in stamps),
        series=tuple(series),
        y_min=low,
        y_max=high,
        y_labels=labels,
        run_moments=tuple(r.verified_at for r in trend.runs),
    )


@dataclass
class VerificationReport:
    """The Verification Summary report of one district."""

    district_number: int
    district_name: str
    generated_at: dt.datetime
    overall_accuracy: str
    objects: list[ObjectRow]
    issues: list[ObjectIssues]
    trend: TrendChart | None = None

    title = VERIFICATION_TITLE

    @property
    def district_line(self) -> str:
        return district_line(self.district_number, self.district_name)

    @property
    def generated_line(self) -> str:
        return f"Generated on {format_timestamp(self.generated_at)}"

    def district_cells(self) -> tuple[str, ...]:
        return (str(self.district_number), self.district_name, self.overall_accuracy)

    @property
    def issue_count(self) -> int:
        return sum(o.keys for o in self.issues)

    @property
    def issues_heading(self) -> str:
        return f"{RECORD_ISSUES_HEADING}: {self.issue_count:,} keys"


def _issue_lines(issue: RecordIssue) -> list[IssueLine]:
    label = ISSUE_LABELS.get(issue.issue, str(issue.issue))
    if not issue.diffs:
        # Missing keys have no column; a mismatch always has at least one diff.
        return [IssueLine(issue.key, label, "", "", "")]
    return [
        IssueLine(issue.key, label, d.column, display_value(d.district), display_value(d.state))
        for d in issue.diffs
    ]


def verification_report_from_result(
    verification: DistrictVerification,
    generated_at: dt.datetime,
    trend: AccuracyTrend | None = None,
) -> VerificationReport:
    """The Verification Summary content of one district, objects in the order verified;
    with ``trend`` (of more than one run), each object's accuracy over time too."""
    rows: list[ObjectRow] = []
    issues: list[ObjectIssues] = []
    distinct = errors = 0
    for o in verification.objects:
        distinct += o.distinct
        errors += o.errors
        rows.append(
            ObjectRow(
                object=o.object,
                accuracy=format_accuracy(o.distinct, o.errors),
                timestamp=format_timestamp(o.verified_at),
                distinct=o.distinct,
                at_district=o.at_district,
                at_state=o.at_state,
                errors=o.errors,
                missing_at_state=len(o.missing_at_state),
                missing_at_district=len(o.missing_at_district),
                mismatched=len(o.mismatched),
                verified_at=o.verified_at,
            )
        )
        spec = REGISTRY.get(o.object)
        ordered = sorted(o.issues, key=lambda i: i.key)
        issues.append(
            ObjectIssues(
                object=o.object,
                key_label=spec.key_label if spec else "Key",
                keys=len(ordered),
                lines=tuple(line for i in ordered for line in _issue_lines(i)),
            )
        )
    return VerificationReport(
        district_number=verification.district_number,
        district_name=verification.district_name,
        generated_at=generated_at,
        overall_accuracy=format_accuracy(distinct, errors),
        objects=rows,
        issues=issues,
        trend=trend_chart(trend),
    )


# --- Listings: the sections both renderers print, in order ------------------------------

ID_COLUMNS = 8  # IDs per printed row in both formats


@dataclass(frozen=True)
class Listing:
    """One section of a report as both renderers print it.

    Either an ID grid (``ids``, laid out ``ID_COLUMNS`` per row) or a table (``columns``
    and ``rows``); ``none_text`` prints when it is empty.
    """

    heading: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    ids: tuple[str, ...] = ()
    legend: str | None = None
    none_text: str = NONE_TEXT

    @property
    def is_grid(self) -> bool:
        return not self.columns

    @property
    def empty(self) -> bool:
        return not (self.rows or self.ids)


def sync_listings(report: SyncReport) -> list[Listing]:
    """The sections of a Sync Request History report, in print order."""
    listings = [
        Listing(
            heading_with_count(FAILED_HEADING, len(report.failed)),
            columns=("ID", "Reason"),
            rows=tuple((str(f.key), f.reason) for f in report.failed),
        ),
        Listing(
            heading_with_count(SUCCESSFUL_HEADING, len(report.successful)),
            ids=tuple(s.label for s in report.successful),
            legend=UNCHANGED_LEGEND if report.has_unchanged else None,
        ),
        Listing(
            heading_with_count(NOT_FOUND_HEADING, len(report.not_found)),
            ids=tuple(str(k) for k in report.not_found),
        ),
    ]
    if report.show_parents:
        listings.append(
            Listing(
                heading_with_count(PARENTS_HEADING, len(report.parents_synced)),
                columns=("ID", "Parents synced"),
                rows=tuple((str(p.key), p.text) for p in report.parents_synced),
            )
        )
    return listings


def verification_listings(report: VerificationReport) -> list[Listing]:
    """The record-issue sections of a Verification Summary, one per object."""
    return [
        Listing(o.heading, columns=o.columns, rows=tuple(line.cells() for line in o.lines))
        for o in report.issues
    ]
