"""Which persons carry a seeded discrepancy, and how each one is applied to the rows.

Each chosen person carries exactly one action, so a key is never seeded twice: an
action changes the district copy, the state copy or both, and records in the manifest
every key it made different (and every key the state will refuse).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from .manifest import DemoManifest
from .names import LAST, plain_spelling
from .people import GRADE_CODES, SCHOOLS, Person

# Codes the state has no mapping for (absent from schema.CODE_TABLES on purpose).
UNMAPPED_GENDER = "U"
UNMAPPED_GRADE = "X9"
UNMAPPED_DIPLOMA = "ZZ"

# Row layouts (district side), see schema.py.
P_STATE_ID, P_CURRENT = 1, 2
I_ID, I_LAST, I_FIRST, I_MIDDLE, I_SUFFIX, I_BIRTH, I_GENDER, I_RACE = 0, 2, 3, 4, 5, 6, 7, 8
I_EFFECTIVE = 9
E_ID, E_SCHOOL, E_GRADE, E_START, E_START_STATUS, E_END, E_END_STATUS, E_SERVICE = (
    0, 2, 4, 5, 6, 7, 8, 9,
)  # fmt: skip
G_ID, G_TYPE, G_DATE, G_COHORT = 0, 2, 3, 4

# Mismatch variants, hardest first: small demos get only the first few of each.
PERSON_MISMATCHES = (
    "middle_null_vs_empty",
    "current_identity",
    "birth_date",
    "last_name",
    "middle_empty_vs_null",
    "first_name",
    "gender",
    "race",
    "suffix",
    "state_id",
    "newest_identity_missing",
    "state_id_empty_vs_null",
    "name_and_birth_date",
)
ENROLLMENT_MISMATCHES = (
    "end_date_null",
    "grade",
    "end_date",
    "school",
    "start_date",
    "end_status",
    "service_type",
    "start_status_null",
)
GRADUATION_MISMATCHES = ("diploma_date", "diploma_type", "diploma_date_null", "cohort")
# Drift in the identity history only: the compared row (person and current identity) is
# equal on both sides, so only whole-object verification finds these.
HISTORY_MISMATCHES = (
    "old_identity_missing_at_state",
    "old_identity_extra_at_state",
    "old_identity_last_name",
    "current_effective_date",
)
NOISE_SPACES = (
    "state_last_trailing",
    "district_first_leading",
    "state_id_trailing",
    "state_old_last_tab",
)

# Actions in assignment order: the missing-at-state ones come first so that they land on
# low person indexes, whose personIDs the other district at the state uses too.
ACTIONS = (
    "person_missing_at_state",
    "person_unmapped_missing",
    "enrollment_missing_at_state",
    "enrollment_unmapped_missing",
    "graduation_missing_at_state",
    "graduation_unmapped_missing",
    "person_missing_at_district",
    "enrollment_missing_at_district",
    "graduation_missing_at_district",
    "person_mismatched",
    "person_history_mismatched",
    "enrollment_mismatched",
    "graduation_mismatched",
    "person_unmapped_mismatched",
    "enrollment_unmapped_mismatched",
    "graduation_unmapped_mismatched",
    "noise_spaces",
    "noise_datetime",
)

# Identity ids of identities only the state has (history drift): above every generated id.
EXTRA_IDENTITY_OFFSET = 1_000_000_000

MIN_MISMATCHED = 6  # so that even a small demo has the NULL-vs-'' and date cases


def action_counts(persons: int) -> dict[str, int]:
    """How many persons carry each action: about 0.5% per kind, a few at least."""
    per_kind = max(3, persons // 200)
    mismatched = max(MIN_MISMATCHED, persons // 200)
    unmapped = max(2, persons // 1000)  # twice: missing and mismatched
    counts = {}
    for action in ACTIONS:
        if "unmapped" in action:
            counts[action] = unmapped
        elif action.endswith("mismatched"):
            counts[action] = mismatched
        else:
            counts[action] = per_kind
    # Tiny demos: share half the persons round-robin so every kind still gets some.
    budget = persons // 2
    if sum(counts.values()) > budget:
        reduced = dict.fromkeys(counts, 0)
        while budget:
            for action in ACTIONS:
                if budget and reduced[action] < counts[action]:
                    reduced[action] += 1
                    budget -= 1
        counts = reduced
    return counts


def make_plan(rng: random.Random, persons: int, shared_ids: int) -> dict[int, tuple[str, int]]:
    """Person index -> (action, variant number), for a scattered sample of persons."""
    counts = action_counts(persons)
    picked = rng.sample(range(persons), sum(counts.values()))
    picked.sort(key=lambda index: index >= shared_ids)  # stable: keeps the random order
    plan: dict[int, tuple[str, int]] = {}
    position = 0
    for action in ACTIONS:
        for variant in range(counts[action]):
            plan[picked[position]] = (action, variant)
            position += 1
    return plan


def shape(action: str, variant: int) -> dict:
    """The person shape an action needs (see PersonFactory.make keywords)."""
    if action.startswith("graduation"):
        return {"graduate": True}
    if action in ("person_missing_at_state", "person_unmapped_missing"):
        # Graduates too, so that Graduation has parent_missing keys.
        return {"graduate": variant < 3 or variant % 4 == 0}
    if action == "person_missing_at_district":
        return {"graduate": variant < 2 or variant % 4 == 0}
    if action in ("enrollment_missing_at_district", "enrollment_mismatched"):
        return {"min_enrollments": 2}
    if action == "person_mismatched":
        name = PERSON_MISMATCHES[variant % len(PERSON_MISMATCHES)]
        return {"two_identities": name in ("current_identity", "newest_identity_missing")}
    if action == "person_history_mismatched":
        name = HISTORY_MISMATCHES[variant % len(HISTORY_MISMATCHES)]
        return {"two_identities": name != "old_identity_extra_at_state"}
    if action == "noise_spaces":
        name = NOISE_SPACES[variant % len(NOISE_SPACES)]
        return {"two_identities": name == "state_old_last_tab"}
    if action == "noise_datetime":
        return {"graduate": variant % 2 == 0}
    return {}


@dataclass
class Seeder:
    """Applies one action to a person's rows; returns the district and state copies."""

    rng: random.Random
    manifest: DemoManifest
    # (state table, id column, date column, id): dates the state stores as date-time text.
    datetime_noise: list[tuple[str, str, str, int]] = field(default_factory=list)

    def apply(self, action: str, variant: int, p: Person) -> tuple[Person | None, Person | None]:
        district = replace(p, identities=list(p.identities), enrollments=list(p.enrollments))
        state = replace(p, identities=list(p.identities), enrollments=list(p.enrollments))
        handler = getattr(self, "_" + action)
        return handler(variant, district, state)

    def _note(self, obj: str, kind: str, keys) -> None:
        self.manifest.issues[obj][kind].extend(keys)

    def _fail(self, obj: str, reason: str, keys) -> None:
        self.manifest.will_fail[obj][reason].extend(keys)

    # ------------------------------------------------------------ PersonIdentity

    def _person_gone_from_state(self, district: Person) -> tuple[Person, None]:
        """The whole person is missing at the state, so are its enrollments and graduations."""
        enrollments = [row[E_ID] for row in district.enrollments]
        graduations = [row[G_ID] for row in district.graduations]
        self._note("PersonIdentity", "missing_at_state", [district.person[0]])
        self._note("Enrollment", "missing_at_state", enrollments)
        self._note("Graduation", "missing_at_state", graduations)
        self._fail("Enrollment", "parent_missing", enrollments)
        self._fail("Graduation", "parent_missing", graduations)
        return district, None

    def _person_missing_at_state(self, _variant, district, _state):
        return self._person_gone_from_state(district)

    def _person_unmapped_missing(self, _variant, district, _state):
        district.identities[-1] = _set(district.identities[-1], I_GENDER, UNMAPPED_GENDER)
        self._fail("PersonIdentity", "unmapped_code", [district.person[0]])
        return self._person_gone_from_state(district)

    def _person_unmapped_mismatched(self, _variant, district, state):
        district.identities[-1] = _set(district.identities[-1], I_GENDER, UNMAPPED_GENDER)
        self._note("PersonIdentity", "mismatched", [district.person[0]])
        self._fail("PersonIdentity", "unmapped_code", [district.person[0]])
        return district, state

    def _person_missing_at_district(self, _variant, _district, state):
        self._note("PersonIdentity", "missing_at_district", [state.person[0]])
        self._note("Enrollment", "missing_at_district", [r[E_ID] for r in state.enrollments])
        self._note("Graduation", "missing_at_district", [r[G_ID] for r in state.graduations])
        return None, state

    def _person_mismatched(self, variant, district, state):
        name = PERSON_MISMATCHES[variant % len(PERSON_MISMATCHES)]
        rng = self.rng
        d_cur, s_cur = district.identities[-1], state.identities[-1]
        if name == "middle_null_vs_empty":
            district.identities[-1] = _set(d_cur, I_MIDDLE, None)
            state.identities[-1] = _set(s_cur, I_MIDDLE, "")
        elif name == "middle_empty_vs_null":
            district.identities[-1] = _set(d_cur, I_MIDDLE, "")
            state.identities[-1] = _set(s_cur, I_MIDDLE, None)
        elif name == "current_identity":
            # The state missed the name change: it still points at the older identity.
            state.person = _set(state.person, P_CURRENT, state.identities[0][I_ID])
        elif name == "newest_identity_missing":
            state.identities = state.identities[:1]
            state.person = _set(state.person, P_CURRENT, state.identities[0][I_ID])
        elif name in ("birth_date", "name_and_birth_date"):
            shift = rng.choice((-1, 1)) * (1 + int(rng.random() * 28))
            state.identities[-1] = _set(s_cur, I_BIRTH, _shift(s_cur[I_BIRTH], shift))
            if name == "name_and_birth_date":
                state.identities[-1] = _set(state.identities[-1], I_LAST, _other_last(rng, s_cur))
        elif name == "last_name":
            state.identities[-1] = _set(s_cur, I_LAST, _other_last(rng, s_cur))
        elif name == "first_name":
            first = s_cur[I_FIRST]
            other = plain_spelling(first)
            if other == first:
                other = first[:-1] if len(first) > 3 else first + "a"  # a typo
            state.identities[-1] = _set(s_cur, I_FIRST, other)
        elif name == "gender":
            state.identities[-1] = _set(s_cur, I_GENDER, "F" if s_cur[I_GENDER] == "M" else "M")
        elif name == "race":
            state.identities[-1] = _set(s_cur, I_RACE, str(int(s_cur[I_RACE]) % 7 + 1))
        elif name == "suffix":
            state.identities[-1] = _set(s_cur, I_SUFFIX, None if s_cur[I_SUFFIX] else "JR")
        elif name == "state_id":
            old = state.person[P_STATE_ID]
            new = str(1_000_000_000 + ((int(old) if old else 0) * 31 + 17) % 9_000_000_000)
            if new == old:
                new = str(int(new) + 1)
            state.person = _set(state.person, P_STATE_ID, new)
        elif name == "state_id_empty_vs_null":
            district.person = _set(district.person, P_STATE_ID, "")
            state.person = _set(state.person, P_STATE_ID, None)
        self._note("PersonIdentity", "mismatched", [district.person[0]])
        return district, state

    def _person_history_mismatched(self, variant, district, state):
        name = HISTORY_MISMATCHES[variant % len(HISTORY_MISMATCHES)]
        if name == "old_identity_missing_at_state":
            state.identities = state.identities[1:]  # the earlier name, deleted at the state
        elif name == "old_identity_extra_at_state":
            # The district deleted a wrongly entered earlier identity; the state kept it.
            current = state.identities[-1]
            # An id no generated identity has (they stay far below), unique per person.
            old_id = current[I_ID] + EXTRA_IDENTITY_OFFSET
            state.identities = [current, _set(current, I_ID, old_id)]
        elif name == "old_identity_last_name":
            old = state.identities[0]
            state.identities[0] = _set(old, I_LAST, _other_last(self.rng, old))
        else:
            current = state.identities[-1]
            state.identities[-1] = _set(current, I_EFFECTIVE, _shift(current[I_EFFECTIVE], 3))
        self._note("PersonIdentity", "mismatched", [district.person[0]])
        return district, state

    # ------------------------------------------------------------ Enrollment

    def _enrollment_missing_at_state(self, _variant, district, state):
        self._note("Enrollment", "missing_at_state", [state.enrollments.pop()[E_ID]])
        return district, state

    def _enrollment_unmapped_missing(self, _variant, district, state):
        district.enrollments[-1] = _set(district.enrollments[-1], E_GRADE, UNMAPPED_GRADE)
        key = state.enrollments.pop()[E_ID]
        self._note("Enrollment", "missing_at_state", [key])
        self._fail("Enrollment", "unmapped_code", [key])
        return district, state

    def _enrollment_unmapped_mismatched(self, _variant, district, state):
        district.enrollments[-1] = _set(district.enrollments[-1], E_GRADE, UNMAPPED_GRADE)
        key = district.enrollments[-1][E_ID]
        self._note("Enrollment", "mismatched", [key])
        self._fail("Enrollment", "unmapped_code", [key])
        return district, state

    def _enrollment_missing_at_district(self, _variant, district, state):
        # The district deleted its oldest enrollment; the delete never reached the state.
        self._note("Enrollment", "missing_at_district", [district.enrollments.pop(0)[E_ID]])
        return district, state

    def _enrollment_mismatched(self, variant, district, state):
        name = ENROLLMENT_MISMATCHES[variant % len(ENROLLMENT_MISMATCHES)]
        row = state.enrollments[0]  # a past year: it has an end date and status
        rng = self.rng
        if name == "end_date_null":
            row = _set(row, E_END, None)
        elif name == "end_date":
            row = _set(row, E_END, _shift(row[E_END], -1 - int(rng.random() * 10)))
        elif name == "grade":
            grade = next(g for g, code in GRADE_CODES.items() if code == row[E_GRADE])
            row = _set(row, E_GRADE, GRADE_CODES[grade - 1 if grade > -1 else 0])
        elif name == "school":
            schools = [s[0] for s in SCHOOLS if s[0] != row[E_SCHOOL]]
            row = _set(row, E_SCHOOL, schools[int(rng.random() * len(schools))])
        elif name == "start_date":
            row = _set(row, E_START, _shift(row[E_START], 1 + int(rng.random() * 10)))
        elif name == "end_status":
            row = _set(row, E_END_STATUS, "W1" if row[E_END_STATUS] != "W1" else "W2")
        elif name == "service_type":
            row = _set(row, E_SERVICE, "S" if row[E_SERVICE] == "P" else "P")
        elif name == "start_status_null":
            row = _set(row, E_START_STATUS, None if row[E_START_STATUS] else "E2")
        state.enrollments[0] = row
        self._note("Enrollment", "mismatched", [row[E_ID]])
        return district, state

    # ------------------------------------------------------------ Graduation

    def _graduation_missing_at_state(self, _variant, district, state):
        self._note("Graduation", "missing_at_state", [g[G_ID] for g in state.graduations])
        state.graduations = []
        return district, state

    def _graduation_unmapped_missing(self, _variant, district, state):
        district.graduations = [_set(g, G_TYPE, UNMAPPED_DIPLOMA) for g in district.graduations]
        keys = [g[G_ID] for g in state.graduations]
        self._note("Graduation", "missing_at_state", keys)
        self._fail("Graduation", "unmapped_code", keys)
        state.graduations = []
        return district, state

    def _graduation_unmapped_mismatched(self, _variant, district, state):
        district.graduations = [_set(g, G_TYPE, UNMAPPED_DIPLOMA) for g in district.graduations]
        keys = [g[G_ID] for g in district.graduations]
        self._note("Graduation", "mismatched", keys)
        self._fail("Graduation", "unmapped_code", keys)
        return district, state

    def _graduation_missing_at_district(self, _variant, district, state):
        self._note("Graduation", "missing_at_district", [g[G_ID] for g in district.graduations])
        district.graduations = []
        return district, state

    def _graduation_mismatched(self, variant, district, state):
        name = GRADUATION_MISMATCHES[variant % len(GRADUATION_MISMATCHES)]
        (row,) = state.graduations
        if name == "diploma_date":
            when = row[G_DATE]
            row = _set(row, G_DATE, _shift(when, 7) if when else f"{row[G_COHORT]}-06-10")
        elif name == "diploma_type":
            row = _set(row, G_TYPE, "AD" if row[G_TYPE] == "RG" else "RG")
        elif name == "diploma_date_null":
            row = _set(row, G_DATE, None if row[G_DATE] else f"{row[G_COHORT]}-06-12")
        elif name == "cohort":
            row = _set(row, G_COHORT, row[G_COHORT] - 1)
        state.graduations = [row]
        self._note("Graduation", "mismatched", [row[G_ID]])
        return district, state

    # ------------------------------------------------------------ noise (not discrepancies)

    def _noise_spaces(self, variant, district, state):
        name = NOISE_SPACES[variant % len(NOISE_SPACES)]
        d_cur, s_cur = district.identities[-1], state.identities[-1]
        if name == "state_id_trailing" and state.person[P_STATE_ID]:
            state.person = _set(state.person, P_STATE_ID, state.person[P_STATE_ID] + "  ")
        elif name == "district_first_leading":
            district.identities[-1] = _set(d_cur, I_FIRST, " " + d_cur[I_FIRST])
        elif name == "state_old_last_tab":
            # White space around an earlier identity's name: trimmed, not a difference.
            old = state.identities[0]
            state.identities[0] = _set(old, I_LAST, old[I_LAST] + "\t")
        else:
            state.identities[-1] = _set(s_cur, I_LAST, s_cur[I_LAST] + " ")
        return district, state

    def _noise_datetime(self, _variant, district, state):
        # Recorded, not applied: the loader writes these dates as text with raw SQL at the
        # end, on SQLite only (other engines have a real DATE type and cannot store it).
        noise = self.datetime_noise
        noise.append(("state_identity", "identity_id", "birth_date", state.identities[-1][I_ID]))
        noise.extend(
            ("state_enrollment", "enrollment_id", "start_date", e[E_ID]) for e in state.enrollments
        )
        noise.extend(
            ("state_graduation", "graduation_id", "diploma_date", g[G_ID])
            for g in state.graduations
            if g[G_DATE]
        )
        return district, state


def _set(row: tuple, index: int, value) -> tuple:
    return (*row[:index], value, *row[index + 1 :])


def _shift(iso: str, days: int) -> str:
    return (date.fromisoformat(iso[:10]) + timedelta(days=days)).isoformat()


def _other_last(rng: random.Random, identity: tuple) -> str:
    while True:
        last = LAST[int(rng.random() * len(LAST))]
        if last.strip() != identity[I_LAST].strip():
            return last
