"""Realistic people, identities, enrollments and graduations for one district.

Rows are plain tuples in the column order of ``selective_sync.schema`` (district side),
dates as ISO strings: generating a million students is dominated by Python work, so the
hot path avoids objects and uses only ``random()``, the cheapest call of ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from .names import (
    FEMALE_FIRST,
    LAST,
    MALE_FIRST,
    MIDDLE,
    NONBINARY_FIRST,
    SUFFIXES,
    plain_spelling,
)

# The demo is pinned to one school year so that the same seed gives the same data on any
# day: 2025-26 is "this year", its enrollments are still open (no end date or status).
CURRENT_END_YEAR = 2026

PERSON_ID_BASE = 10_000
IDENTITY_ID_BASE = 40_000
ENROLLMENT_ID_BASE = 100_000
GRADUATION_ID_BASE = 7_000

# (school_id, name, level): E elementary PK-5, M middle 6-8, H high 9-12, A alternative.
SCHOOLS: tuple[tuple[int, str, str], ...] = (
    (110, "Alder Creek Elementary", "E"),
    (120, "Birchwood Elementary", "E"),
    (130, "Lakeview Elementary", "E"),
    (210, "Timberline Middle School", "M"),
    (220, "Riverbend Middle School", "M"),
    (310, "Valley High School", "H"),
    (320, "Summit Ridge High School", "H"),
    (400, "Evergreen Alternative Program", "A"),
)
_ELEMENTARY = (110, 120, 130)
_MIDDLE = (210, 220)
_HIGH = (310, 320)
ALTERNATIVE_SCHOOL = 400

GRADE_CODES: dict[int, str] = {-1: "PK", 0: "KG", **{g: f"{g:02d}" for g in range(1, 13)}}

_DAY0 = date(1985, 1, 1).toordinal()
# Every date the demo can produce, as ISO text, indexed by days since _DAY0.
DAYS: tuple[str, ...] = tuple(
    date.fromordinal(_DAY0 + n).isoformat()
    for n in range(date(CURRENT_END_YEAR + 4, 1, 1).toordinal() - _DAY0)
)


def day(year: int, month: int, dom: int) -> int:
    """Index into DAYS of a calendar date."""
    return date(year, month, dom).toordinal() - _DAY0


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """A lookup list in which each value appears ``weight`` times (index with random())."""
    return tuple(value for value, weight in pairs for _ in range(weight))


# Roughly the shape of a US public school district (NCES), per 200 students.
_RACE = _weighted((("1", 54), ("2", 2), ("3", 12), ("4", 28), ("5", 1), ("6", 90), ("7", 13)))
_DIPLOMA = _weighted((("RG", 140), ("AD", 40), ("CE", 12), ("GE", 8)))

_AUG20 = {y: day(y, 8, 20) for y in range(1990, CURRENT_END_YEAR + 1)}
_SEP1 = {y: day(y, 9, 1) for y in range(1985, CURRENT_END_YEAR + 1)}
_OCT1 = {y: day(y, 10, 1) for y in range(1990, CURRENT_END_YEAR + 1)}
_JUN1 = {y: day(y, 6, 1) for y in range(1990, CURRENT_END_YEAR + 1)}

_GRADUATE_SHARE = 0.14
_WITHDRAWN_SHARE = 0.08
_SECOND_IDENTITY_SHARE = 0.18


@dataclass
class Person:
    """One person's rows at the district, before any seeded discrepancy."""

    person: tuple
    identities: list[tuple]  # oldest first; the last one is the current identity
    enrollments: list[tuple]  # oldest first
    graduations: list[tuple]


class PersonFactory:
    """Makes the rows of one district's persons, in order, from one random stream."""

    def __init__(self, rng: random.Random, seed: int, district_number: int) -> None:
        self.rng = rng
        self.seed = seed
        # Different districts get different state IDs; the same district ID numbers.
        self.state_id_offset = (seed * 104_729 + district_number * 1_299_709) % 9_000_000_000
        self.next_identity = IDENTITY_ID_BASE
        self.next_enrollment = ENROLLMENT_ID_BASE
        self.next_graduation = GRADUATION_ID_BASE

    def person_id(self, index: int) -> int:
        """The personID of the index-th person: increasing, with gaps, same in every district."""
        return PERSON_ID_BASE + 3 * index + ((index * 2_654_435_761 + self.seed) >> 16) % 3

    def _next_id(self, current: int) -> int:
        # Mostly consecutive, sometimes a gap of 2-5 (deleted or test records).
        g = self.rng.random()
        return current + (1 if g < 0.9 else 2 + int((g - 0.9) * 40))

    def make(
        self,
        index: int,
        *,
        graduate: bool = False,
        min_enrollments: int = 1,
        two_identities: bool = False,
    ) -> Person:
        """The rows of the index-th person; the keywords force a shape a discrepancy needs."""
        r = self.rng.random
        pid = self.person_id(index)

        # Profile: still enrolled this year, graduated in an earlier year, or withdrew.
        x = r()
        if graduate or x < _GRADUATE_SHARE:
            status = "G"
            last_year = CURRENT_END_YEAR - 1 - int(r() * 3)
            last_grade = 12
        elif x < _GRADUATE_SHARE + _WITHDRAWN_SHARE:
            status = "W"
            last_year = CURRENT_END_YEAR - int(r() * 3)
            last_grade = int(r() * 13)
        else:
            status = "C"
            last_year = CURRENT_END_YEAR
            last_grade = int(r() * 14) - 1
        y = r()
        count = 1 if y < 0.25 else 2 if y < 0.6 else 3
        count = max(count, min_enrollments)
        # Nobody is enrolled below pre-kindergarten.
        last_grade = max(last_grade, count - 2)
        first_year = last_year - count + 1
        first_grade = last_grade - count + 1

        # Age consistent with grade: kindergarten at 5 on September 1; a few were held back.
        born = _SEP1[first_year - first_grade - 7] + int(r() * 365)
        if r() < 0.04:
            born -= 365
        birth = DAYS[born]

        g = r()
        if g < 0.49:
            gender, firsts = "M", MALE_FIRST
        elif g < 0.98:
            gender, firsts = "F", FEMALE_FIRST
        else:
            gender, firsts = "N", NONBINARY_FIRST
        first = firsts[int(r() * len(firsts))]
        last = LAST[int(r() * len(LAST))]
        if r() < 0.04:
            last = f"{last}-{LAST[int(r() * len(LAST))]}"
        m = r()
        middle = MIDDLE[int(m * 1.6 * len(MIDDLE))] if m < 0.62 else "" if m < 0.64 else None
        suffix = SUFFIXES[int(r() * len(SUFFIXES))] if gender == "M" and r() < 0.04 else None
        race = _RACE[int(r() * len(_RACE))]
        state_id = (
            None
            if r() < 0.02
            else str(1_000_000_000 + (index * 7919 + self.state_id_offset) % 9_000_000_000)
        )

        # Enrollments, one a school year, in the schools that teach each grade.
        cluster = int(r() * 6)
        alternative = r() < 0.03
        enrollments = []
        school = None
        start0 = 0
        for k in range(count):
            year = first_year + k
            grade = first_grade + k
            if grade <= 5:
                new_school = _ELEMENTARY[cluster % 3]
            elif grade <= 8:
                new_school = _MIDDLE[cluster % 2]
            else:
                new_school = ALTERNATIVE_SCHOOL if alternative else _HIGH[cluster % 2]
            start = _AUG20[year - 1] + int(r() * 16)
            if k == 0:
                if r() < 0.1:
                    start += int(r() * 120)  # arrived during the year
                start_status = "E1" if grade <= 0 or r() < 0.4 else "E2"
                start0 = start
            elif new_school != school:
                start_status = "E2"
            else:
                start_status = "R1" if r() < 0.05 else None
            school = new_school
            if k < count - 1:
                end, end_status = DAYS[_JUN1[year] + int(r() * 14)], "P1"
            elif status == "G":
                end, end_status = DAYS[_JUN1[year] + int(r() * 14)], "G1"
            elif status == "W":
                end = DAYS[max(start + 20, _OCT1[year - 1] + int(r() * 230))]
                end_status = "W1" if r() < 0.6 else "W2"
            else:
                end, end_status = None, None
            s = r()
            service = "P" if s < 0.94 else "S" if s < 0.98 else "N"
            self.next_enrollment = eid = self._next_id(self.next_enrollment)
            enrollments.append(
                (
                    eid,
                    pid,
                    school,
                    year,
                    GRADE_CODES[grade],
                    DAYS[start],
                    start_status,
                    end,
                    end_status,
                    service,
                )
            )

        # Identity history: some persons were first registered under another name.
        identities = []
        if two_identities or r() < _SECOND_IDENTITY_SHARE:
            old_first, old_last = first, last
            v = r()
            if v < 0.3 and plain_spelling(first + last) != first + last:
                old_first, old_last = plain_spelling(first), plain_spelling(last)
            elif v < 0.45 and "-" in last:
                old_last = last.split("-")[0]
            else:
                while old_last == last:
                    old_last = LAST[int(r() * len(LAST))]
            self.next_identity = old_iid = self._next_id(self.next_identity)
            since = DAYS[start0]
            identities.append(
                (old_iid, pid, old_last, old_first, middle, suffix, birth, gender, race, since)
            )
            changed = start0 + 30 + int(r() * 700)
        else:
            changed = start0
        self.next_identity = iid = self._next_id(self.next_identity)
        identities.append(
            (iid, pid, last, first, middle, suffix, birth, gender, race, DAYS[changed])
        )

        graduations = []
        if status == "G":
            self.next_graduation = gid = self._next_id(self.next_graduation)
            diploma_date = enrollments[-1][7] if r() < 0.98 else None
            cohort = last_year if r() < 0.95 else last_year - 1
            graduations.append((gid, pid, _DIPLOMA[int(r() * len(_DIPLOMA))], diploma_date, cohort))
        return Person((pid, state_id, iid), identities, enrollments, graduations)
