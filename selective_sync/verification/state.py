"""The state's Verification Summary: every district's stored figures, worst district first.

Built from the districts' stored summary tables (``codec.summary_row`` rows: figures only,
no record issues; each district's current rows as ``codec.newest_rows`` reads them), so the
state's view of 100-200 districts is two small reads. A district
with nothing stored yet is listed last, as not verified.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from selective_sync.verification.codec import AccuracyTrend, TrendRun, check_rows

STATE_KEY = "verification-summary-state"
STATE_COLUMNS = ("District", "Name", "Overall Accuracy", "Errors", "Verified at", "Worst object")
STATE_SERIES = "All districts"


@dataclass(frozen=True)
class ObjectFigures:
    """One object's stored figures (what the per-object table shows)."""

    object: str
    verified_at: dt.datetime
    distinct: int
    at_district: int
    at_state: int
    errors: int
    missing_at_state: int
    missing_at_district: int
    mismatched: int

    @property
    def ratio(self) -> Fraction:
        return (
            Fraction(self.distinct - self.errors, self.distinct) if self.distinct else Fraction(1)
        )


@dataclass
class DistrictFigures:
    """One district's line of the state's view, with its objects."""

    number: int
    name: str
    objects: list[ObjectFigures] = field(default_factory=list)

    @property
    def distinct(self) -> int:
        return sum(o.distinct for o in self.objects)

    @property
    def errors(self) -> int:
        return sum(o.errors for o in self.objects)

    @property
    def verified(self) -> bool:
        return bool(self.objects)

    @property
    def ratio(self) -> Fraction:
        return (
            Fraction(self.distinct - self.errors, self.distinct) if self.distinct else Fraction(1)
        )

    @property
    def verified_at(self) -> dt.datetime | None:
        """The oldest of its objects' results: every figure is at least this fresh."""
        return min((o.verified_at for o in self.objects), default=None)

    @property
    def worst_object(self) -> ObjectFigures | None:
        """The object with the lowest accuracy (most errors on a tie); None when clean."""
        worst = min(self.objects, key=lambda o: (o.ratio, -o.errors), default=None)
        return worst if worst is not None and worst.errors else None


@dataclass
class StateSummary:
    """Every configured district, worst overall accuracy first (then by number)."""

    districts: list[DistrictFigures]

    @property
    def distinct(self) -> int:
        return sum(d.distinct for d in self.districts)

    @property
    def errors(self) -> int:
        return sum(d.errors for d in self.districts)

    @property
    def not_verified(self) -> list[DistrictFigures]:
        return [d for d in self.districts if not d.verified]


def figures_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[ObjectFigures]:
    """The objects of one stored summary table (checked as the codec checks it)."""
    return [
        ObjectFigures(
            object=str(r["object"]),
            verified_at=dt.datetime.fromisoformat(r["verified_at"]),
            distinct=int(r["distinct"]),
            at_district=int(r["at_district"]),
            at_state=int(r["at_state"]),
            errors=int(r["errors"]),
            missing_at_state=int(r["missing_at_state"]),
            missing_at_district=int(r["missing_at_district"]),
            mismatched=int(r["mismatched"]),
        )
        for r in check_rows(list(rows))
    ]


def state_summary(
    districts: Iterable[tuple[int, str]], stored: Mapping[int, Sequence[Mapping[str, Any]]]
) -> StateSummary:
    """The state's view of ``districts`` (number, configured name) from each one's stored
    rows (``stored[number]``; absent: not verified yet), worst first."""
    found = [
        DistrictFigures(number, name, figures_from_rows(stored[number]) if number in stored else [])
        for number, name in districts
    ]
    found.sort(key=lambda d: (not d.verified, d.ratio, -d.errors, d.number))
    return StateSummary(found)


def state_rows(summary: StateSummary, accuracy, timestamp) -> list[dict[str, Any]]:
    """The ``verification-summary-state`` table: one row per district, worst first.
    ``accuracy(distinct, errors)`` and ``timestamp(dt)`` format the cells."""
    rows = []
    for d in summary.districts:
        worst = d.worst_object
        rows.append(
            {
                "District": d.number,
                "Name": d.name,
                "Overall Accuracy": accuracy(d.distinct, d.errors) if d.verified else "",
                "Errors": d.errors,
                "Verified at": timestamp(d.verified_at) if d.verified else "not verified yet",
                "Worst object": (
                    f"{worst.object} ({accuracy(worst.distinct, worst.errors)})" if worst else ""
                ),
            }
        )
    return rows


def state_trend(trends: Iterable[AccuracyTrend], days: int = 10) -> AccuracyTrend:
    """The state's accuracy over the last ``days`` days with results, from every
    district's trend: at the end of each day, the sum of every district's latest figures
    so far (a district counts from its first run on). One series, ``STATE_SERIES``."""
    points = sorted(
        (
            (run.verified_at, trend.district_number, run.counts)
            for trend in trends
            for run in trend.runs
        ),
        key=lambda p: (p[0], p[1]),
    )
    latest: dict[tuple[int, str], tuple[int, int]] = {}
    by_day: dict[dt.date, TrendRun] = {}
    for when, number, counts in points:
        for name, figures in counts.items():
            latest[(number, name)] = figures
        total = (sum(d for d, _e in latest.values()), sum(e for _d, e in latest.values()))
        day = when.astimezone(dt.UTC).date()
        by_day[day] = TrendRun(
            run_id=day.isoformat(), verified_at=when, counts={STATE_SERIES: total}
        )
    return AccuracyTrend(0, "State", [by_day[d] for d in sorted(by_day)[-days:]])
