"""Find IDs: what to find (objects, summary lists), the limits, and the checked filter
set :func:`build_query` makes of the user's input; the keys of a stored summary."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from ..errors import BadInput
from ..models import DistrictVerification
from .names import fold

DEFAULT_LIMIT = 100
# Enough to paste into one selective sync (10,000 keys is its benchmarked size).
MAX_LIMIT = 10_000
MAX_NAME_LEN = 60
MAX_STATE_ID_LEN = 12


class FindObject(StrEnum):
    """What Find IDs lists: persons (personIDs) or enrollments (enrollmentIDs)."""

    PersonIdentity = "PersonIdentity"
    Enrollment = "Enrollment"


class SummaryKind(StrEnum):
    """A key list of a stored Verification Summary."""

    missing_at_state = "missing_at_state"
    mismatched = "mismatched"
    missing_at_district = "missing_at_district"


KEY_LABEL = {FindObject.PersonIdentity: "personID", FindObject.Enrollment: "enrollmentID"}


# ---------------------------------------------------------------- the query


@dataclass(frozen=True)
class FindQuery:
    """A checked filter set. Names are folded prefixes; ``school`` is as the user gave it
    (a school ID or name), resolved against the district's schools by :func:`find_records`."""

    object: FindObject
    first: str | None = None
    last: str | None = None
    birth_date: date | None = None
    state_id: str | None = None
    school: str | None = None
    grade: str | None = None
    end_year: int | None = None
    limit: int = DEFAULT_LIMIT
    from_summary: SummaryKind | None = None
    # The filters as the user gave them, for headings and artifacts.
    shown: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def key_label(self) -> str:
        return KEY_LABEL[self.object]

    @property
    def person_filtered(self) -> bool:
        return any(v is not None for v in (self.first, self.last, self.birth_date, self.state_id))

    @property
    def enrollment_filtered(self) -> bool:
        return any(v is not None for v in (self.school, self.grade, self.end_year))

    @property
    def filtered(self) -> bool:
        return self.person_filtered or self.enrollment_filtered


FILTER_OPTIONS = "--first, --last, --birth-date, --state-id, --school, --grade, --end-year"


def build_query(
    object: str | FindObject = FindObject.PersonIdentity,
    *,
    first: str | None = None,
    last: str | None = None,
    birth_date: str | date | None = None,
    state_id: str | None = None,
    school: str | int | None = None,
    grade: str | None = None,
    end_year: str | int | None = None,
    limit: str | int | None = DEFAULT_LIMIT,
    from_summary: str | SummaryKind | None = None,
) -> FindQuery:
    """Check every filter; BadInput names the first problem. An empty filter set is refused
    (unless the keys come from a stored summary) so nobody dumps every student by accident."""
    kind = _summary_kind(from_summary)
    shown: dict[str, str] = {}
    query = FindQuery(
        object=_object(object),
        first=_name(first, "first name", shown),
        last=_name(last, "last name", shown),
        birth_date=_date(birth_date, shown),
        state_id=_state_id(state_id, shown),
        school=_school(school, shown),
        grade=_grade(grade, shown),
        end_year=_end_year(end_year, shown),
        limit=_limit(limit),
        from_summary=kind,
        shown=shown,
    )
    if kind is None and not query.filtered:
        raise BadInput(f"give at least one filter ({FILTER_OPTIONS}) or --from-summary KIND")
    if kind is SummaryKind.missing_at_district and query.filtered:
        raise BadInput(
            "filters cannot apply to missing_at_district keys: those records are at the state "
            "only, with no district row to filter on"
        )
    return query


def _object(value: str | FindObject) -> FindObject:
    if isinstance(value, FindObject):
        return value
    text = str(value).strip()
    for member in FindObject:
        if member.value.lower() == text.lower():
            return member
    choices = ", ".join(FindObject)
    raise BadInput(f"unknown object {text!r} for find: choose one of {choices}")


def _summary_kind(value: str | SummaryKind | None) -> SummaryKind | None:
    if value is None or isinstance(value, SummaryKind):
        return value
    text = str(value).strip().lower().replace("-", "_")
    try:
        return SummaryKind(text)
    except ValueError:
        choices = ", ".join(SummaryKind)
        raise BadInput(f"unknown summary list {value!r}: choose one of {choices}") from None


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _name(value: str | None, what: str, shown: dict[str, str]) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > MAX_NAME_LEN:
        raise BadInput(f"{what} filter is longer than {MAX_NAME_LEN} characters")
    folded = fold(text).strip()
    if not folded:
        raise BadInput(f"{what} filter is empty")
    shown[what] = text
    return folded


_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _date(value: str | date | None, shown: dict[str, str]) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        text = str(value).strip()
        try:
            us = _US_DATE.fullmatch(text)
            value = date(int(us[3]), int(us[1]), int(us[2])) if us else date.fromisoformat(text)
        except ValueError:
            raise BadInput(
                f"birth date {text!r} is not a date: use YYYY-MM-DD (or MM/DD/YYYY)"
            ) from None
    shown["birth date"] = value.isoformat()
    return value


def _state_id(value: str | None, shown: dict[str, str]) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise BadInput("state ID filter is empty")
    if len(text) > MAX_STATE_ID_LEN:
        raise BadInput(f"state ID {text!r} is longer than {MAX_STATE_ID_LEN} characters")
    shown["state ID"] = text
    return text


def _school(value: str | int | None, shown: dict[str, str]) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise BadInput("school filter is empty: give a school ID or name")
    shown["school"] = text
    return text


_GRADE_WORDS = {"K": "KG", "KG": "KG", "PK": "PK", "PREK": "PK", "PRE-K": "PK"}
_GRADE_CODE = re.compile(r"[A-Z0-9]{1,4}")


def _grade(value: str | None, shown: dict[str, str]) -> str | None:
    if value is None:
        return None
    text = str(value).strip().upper()
    hint = "use PK, KG, 1-12 or another district grade code (up to 4 letters or digits)"
    if text in _GRADE_WORDS:
        code = _GRADE_WORDS[text]
    elif text.isdigit():
        if not 1 <= int(text) <= 12:
            raise BadInput(f"grade {value!r} is not a grade: {hint}")
        code = f"{int(text):02d}"
    elif _GRADE_CODE.fullmatch(text):
        code = text  # a district's own code, e.g. one the state does not map
    else:
        raise BadInput(f"grade {value!r} is not a grade: {hint}")
    shown["grade"] = code
    return code


def _int(value: str | int, what: str) -> int:
    if isinstance(value, bool):
        raise BadInput(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d{1,9}", text):
        raise BadInput(f"{what} must be a whole number, got {value!r}")
    return int(text)


def _end_year(value: str | int | None, shown: dict[str, str]) -> int | None:
    if _blank(value):
        return None
    year = _int(value, "end year")
    if not 1900 <= year <= 2199:
        raise BadInput(f"end year {year} is not a school year's end (1900-2199), e.g. 2026")
    shown["end year"] = str(year)
    return year


def _limit(value: str | int | None) -> int:
    if _blank(value):
        return DEFAULT_LIMIT
    limit = _int(value, "limit")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInput(f"limit {limit} is out of range: give 1 to {MAX_LIMIT:,}")
    return limit


# ---------------------------------------------------------------- keys of a stored summary


@dataclass(frozen=True)
class SummaryKeys:
    """One key list of the latest stored Verification Summary of one object."""

    kind: SummaryKind
    keys: list[int]
    verified_at: datetime


def summary_keys(
    summary: DistrictVerification | None, object: str | FindObject, kind: str | SummaryKind
) -> SummaryKeys:
    """The keys of ``kind`` for ``object`` in ``summary``; BadInput when none is stored."""
    obj, wanted = _object(object), _summary_kind(kind)
    rerun = "run `selective-sync summary --reverify` to verify and store one"
    if summary is None:
        raise BadInput(f"no Verification Summary is stored for this district: {rerun}")
    for entry in summary.objects:
        if entry.object == obj.value:
            return SummaryKeys(wanted, sorted(set(getattr(entry, wanted.value))), entry.verified_at)
    raise BadInput(
        f"the stored Verification Summary of district {summary.district_number} does not "
        f"cover {obj.value}: {rerun}"
    )
