"""Find IDs: the typed records found, and the result with its table and JSON forms."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

from selective_sync.text import format_timestamp

from .query import FindObject, SummaryKind


@dataclass(frozen=True, slots=True)
class PersonRow:
    """A district person with its current identity."""

    person_id: int
    state_id: str | None
    last_name: str | None
    first_name: str | None
    birth_date: date | None

    @property
    def key(self) -> int:
        return self.person_id


@dataclass(frozen=True, slots=True)
class EnrollmentRow:
    """A district enrollment with its person's current identity."""

    enrollment_id: int
    person_id: int
    state_id: str | None
    last_name: str | None
    first_name: str | None
    birth_date: date | None
    school_id: int
    school_name: str | None
    grade: str
    end_year: int
    start_date: date | None
    end_date: date | None

    @property
    def key(self) -> int:
        return self.enrollment_id


@dataclass(frozen=True, slots=True)
class KeyOnly:
    """A key from a stored summary that has no row at the district."""

    key: int


Record = PersonRow | EnrollmentRow | KeyOnly


@dataclass
class FindResult:
    """The first ``limit`` matches in display order, and how many matched in all."""

    object: str
    key_label: str
    district_number: int
    records: list[Record]
    total: int
    limit: int
    filters: dict[str, str] = field(default_factory=dict)
    from_summary: SummaryKind | None = None
    verified_at: datetime | None = None

    @property
    def more(self) -> int:
        return self.total - len(self.records)

    @property
    def ids(self) -> list[int]:
        return [r.key for r in self.records]

    @property
    def ids_text(self) -> str:
        """The shown IDs comma-separated, ready to paste into a selective sync."""
        return ",".join(map(str, self.ids))

    @property
    def state_only(self) -> bool:
        """The keys are at the state only (missing at the district): no district rows."""
        return self.from_summary is SummaryKind.missing_at_district

    def more_note(self) -> str | None:
        """``N more match`` when the cap cut the list, else None."""
        if self.more <= 0:
            return None
        return f"{self.more:,} more match (showing {len(self.records):,} of {self.total:,})"

    def heading(self) -> str:
        """What was asked, in words: the source of the keys and the filters."""
        noun = "persons" if self.object == FindObject.PersonIdentity else "enrollments"
        parts = [f"{self.object} ({noun}) of district {self.district_number}"]
        if self.from_summary is not None:
            stamp = format_timestamp(self.verified_at)
            parts.append(f"{self.from_summary.value} in the Verification Summary of {stamp}")
        if self.filters:
            parts.append(", ".join(f"{k} {v}" for k, v in self.filters.items()))
        return "; ".join(parts)

    def columns(self) -> list[str]:
        """Table columns: only the key for records at the state only."""
        if self.state_only:
            return [self.key_label]
        person = ["personID", "state ID", "last", "first", "birth date"]
        if self.object == FindObject.PersonIdentity:
            return person
        return ["enrollmentID", *person, "school", "grade", "end year", "start date", "end date"]

    def rows(self) -> list[dict[str, str]]:
        """One dict of display strings per record, keyed by :meth:`columns`."""
        columns = self.columns()
        return [dict(zip(columns, _cells(record, columns), strict=True)) for record in self.records]

    def as_dict(self) -> dict[str, Any]:
        """The ``find --json`` document."""
        return {
            "object": self.object,
            "key_label": self.key_label,
            "district": self.district_number,
            "filters": self.filters,
            "from_summary": self.from_summary.value if self.from_summary else None,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "state_only": self.state_only,
            "total": self.total,
            "shown": len(self.records),
            "more": self.more,
            "limit": self.limit,
            "ids": self.ids,
            "records": [_record_dict(r) for r in self.records],
        }


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, date) else str(value)


def _cells(record: Record, columns: list[str]) -> list[str]:
    if isinstance(record, KeyOnly):
        cells = [str(record.key)] + [""] * (len(columns) - 1)
        if "last" in columns:
            cells[columns.index("last")] = "(not at the district)"
        return cells
    cells = [
        record.person_id,
        record.state_id,
        record.last_name,
        record.first_name,
        record.birth_date,
    ]
    if isinstance(record, EnrollmentRow):
        school = f"{record.school_id} {record.school_name or ''}".strip()
        cells = [
            record.enrollment_id,
            *cells,
            school,
            record.grade,
            record.end_year,
            record.start_date,
            record.end_date,
        ]
    return [_text(c) for c in cells]


def _record_dict(record: Record) -> dict[str, Any]:
    if isinstance(record, KeyOnly):
        return {"key": record.key, "at_district": False}
    data = {f.name: _text(getattr(record, f.name)) or None for f in fields(record)}
    for name in ("person_id", "enrollment_id", "school_id", "end_year"):
        if name in data:
            data[name] = getattr(record, name)
    return {"key": record.key, "at_district": True, **data}
