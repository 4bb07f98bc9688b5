"""The object registry: what each syncable object is made of, declared once.

Flows, verification, sync and reports read this registry; none of them hard-codes an
object. Adding an object means adding its tables to ``schema`` and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .errors import BadInput

Normaliser = Literal["exact", "trim", "date", "int"]
"""How verification compares a column: normalised on both sides (in each database's SQL,
and in Python as ``sync.plan.normalise``), so that noise is not reported as drift.
``trim`` strips surrounding ASCII white space, i.e. any run of space, TAB, CR and LF at
either end (``TRIM_CHARS``; a no-break space or any other character is kept, and Unicode
is not normalised: NFC and NFD spellings differ); ``date`` compares calendar dates
whatever the storage (``2010-05-01`` equals ``2010-05-01 00:00:00`` and
``2010-05-01T00:00:00``; text that is no date is compared as it is); ``int`` integers;
``exact`` as stored. NULL equals NULL; NULL never equals an empty string (nor a string of
white space, which trims to '').

Two rules, side by side:

- *Verification* (the Verification Summary, the record issues, the nightly's choice of
  keys to re-sync) compares after this normalisation: ``Ford`` and ``Ford<TAB>`` are
  equal, so the nightly never sends a key for such noise alone.
- *A sync* of a key (one a person names, or one the nightly sends because verification
  found it different) writes every carried row that is not exactly the district's
  as the state stores it (the district's value converted to the state column's type: a
  date is a date, an integer an integer, text the district's text byte for byte; a
  padded CHAR(n) column keeps no trailing spaces of its own), so ``unchanged`` means
  nothing needed writing, byte for byte. A key that differed only in
  what this normalisation hides is ``synced``, and its reason says so (``NORMALISED_AWAY``:
  "changed 1 row (1 update): white space only").

``tests/test_normalisation.py`` holds both rules in one table of cases."""

TRIM_CHARS = " \t\r\n"
"""What ``trim`` strips from both ends: space, TAB, CR and LF."""

NORMALISED_AWAY: dict[Normaliser, str] = {
    "trim": "white space",
    "date": "date/time form",
    "int": "number form",
}
"""What each normaliser hides from verification, as a sync's reason names a key that
differed only in that: "changed 1 row (1 update): white space only"."""


@dataclass(frozen=True)
class Compared:
    """A column compared by verification."""

    table: str
    column: str
    normalise: Normaliser = "exact"

    @property
    def label(self) -> str:
        return self.column


@dataclass(frozen=True)
class Part:
    """A table whose rows an object carries: all rows whose ``link`` column holds the key.

    Every part but the root is a *child part* (e.g. a person's identity history):
    verification compares all its rows of a key, every column the sync copies, and names
    a differing row under ``label`` in the record issues.
    """

    table: str
    id_column: str
    link: str
    label: str | None = None


@dataclass(frozen=True)
class Join:
    """A one-to-one lookup used to build the compared row (root column -> table id)."""

    table: str
    root_column: str
    id_column: str


@dataclass(frozen=True)
class Parent:
    """The parent object and the root column that holds the parent's key."""

    object: str
    column: str


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    key_label: str
    root: str
    key_column: str
    parts: tuple[Part, ...]
    compared: tuple[Compared, ...]
    joins: tuple[Join, ...] = ()
    parent: Parent | None = None


_OBJECTS: tuple[ObjectSpec, ...] = (
    ObjectSpec(
        name="PersonIdentity",
        key_label="personID",
        root="person",
        key_column="person_id",
        parts=(
            Part("person", "person_id", link="person_id"),
            # Identity history: every identity row of the person, the current one included.
            Part("identity", "identity_id", link="person_id", label="identity history"),
        ),
        joins=(Join("identity", root_column="current_identity_id", id_column="identity_id"),),
        compared=(
            Compared("person", "state_id", "trim"),
            Compared("person", "current_identity_id", "int"),
            Compared("identity", "last_name", "trim"),
            Compared("identity", "first_name", "trim"),
            Compared("identity", "middle_name", "trim"),
            Compared("identity", "suffix", "trim"),
            Compared("identity", "birth_date", "date"),
            Compared("identity", "gender", "trim"),
            Compared("identity", "race_ethnicity", "trim"),
        ),
    ),
    ObjectSpec(
        name="Enrollment",
        key_label="enrollmentID",
        root="enrollment",
        key_column="enrollment_id",
        parts=(Part("enrollment", "enrollment_id", link="enrollment_id"),),
        compared=(
            Compared("enrollment", "person_id", "int"),
            Compared("enrollment", "school_id", "int"),
            Compared("enrollment", "end_year", "int"),
            Compared("enrollment", "grade", "trim"),
            Compared("enrollment", "start_date", "date"),
            Compared("enrollment", "start_status", "trim"),
            Compared("enrollment", "end_date", "date"),
            Compared("enrollment", "end_status", "trim"),
            Compared("enrollment", "service_type", "trim"),
        ),
        parent=Parent("PersonIdentity", column="person_id"),
    ),
    ObjectSpec(
        name="Graduation",
        key_label="graduationID",
        root="graduation",
        key_column="graduation_id",
        parts=(Part("graduation", "graduation_id", link="graduation_id"),),
        compared=(
            Compared("graduation", "person_id", "int"),
            Compared("graduation", "diploma_type", "trim"),
            Compared("graduation", "diploma_date", "date"),
            Compared("graduation", "cohort_end_year", "int"),
        ),
        parent=Parent("PersonIdentity", column="person_id"),
    ),
)

REGISTRY: dict[str, ObjectSpec] = {spec.name: spec for spec in _OBJECTS}

# An Enum of the registry's objects: Prefect renders it as a dropdown in the UI form.
ObjectName = StrEnum("ObjectName", {name: name for name in REGISTRY})


def get_object(name: str | ObjectSpec) -> ObjectSpec:
    """The registry entry for ``name`` (case-insensitive); BadInput names the choices.

    An ObjectSpec is returned as it is, so callers may take either.
    """
    if isinstance(name, ObjectSpec):
        return name
    if isinstance(name, ObjectName):
        name = name.value
    spec = REGISTRY.get(name)
    if spec is None:
        by_lower = {n.lower(): s for n, s in REGISTRY.items()}
        spec = by_lower.get(str(name).strip().lower())
    if spec is None:
        choices = ", ".join(REGISTRY)
        raise BadInput(f"unknown object {name!r}: choose one of {choices}")
    return spec


def object_names() -> list[str]:
    return list(REGISTRY)
