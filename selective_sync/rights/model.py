"""Rights as values: the letters, grants per district, the acting user, refusal messages.

Pure: nothing here reads a database, except that an ``Actor`` made by ``authorise`` records
its refusals through the store it was read from (``Actor.require``).
"""

from __future__ import annotations

import logging
import shlex
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property

from ..errors import BadInput, RightsError

log = logging.getLogger(__name__)

MAX_USER_LEN = 128
MAX_ASKED_LEN = 200
ALL_DISTRICTS = 0
"""The district of a grant on every district (state staff); real district numbers are > 0."""


class Right(StrEnum):
    """One right on the tool."""

    R = "R"
    W = "W"
    D = "D"


RIGHT_MEANING: dict[Right, str] = {
    Right.R: "see the tool, the Sync History and reports",
    Right.W: "run syncs",
    Right.D: "delete history entries, clear the history and administer rights",
}

# Canonical order used whenever rights are stored or shown.
_ORDER = (Right.R, Right.W, Right.D)

Grants = Mapping[int, frozenset[Right]]
"""A user's grants as stored: district (``ALL_DISTRICTS`` for all) -> the letters granted."""


# ---------------------------------------------------------------- validation and text


def normalize_user(user: str | None, what: str = "user name") -> str:
    """The stripped user name; BadInput when empty, too long or holding control characters."""
    if not isinstance(user, str):
        raise BadInput(f"{what} must be text, got {type(user).__name__}")
    name = user.strip()
    if not name:
        raise BadInput(f"{what} is empty")
    if len(name) > MAX_USER_LEN:
        raise BadInput(f"{what} is longer than {MAX_USER_LEN} characters")
    # Control and format characters (incl. invisible bidi overrides) would let two names
    # look alike or garble output; refuse them outright.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        raise BadInput(f"{what} {name!r} contains control characters")
    return name


def parse_rights(rights: str | Iterable[str]) -> frozenset[Right]:
    """Parse letters like ``"RWD"``, ``"rw"`` or ``"R,W"`` into a non-empty set of rights."""
    text = rights if isinstance(rights, str) else "".join(rights)
    letters = text.replace(",", "").replace(" ", "").upper()
    if not letters:
        raise BadInput("no rights given: use letters from R, W, D (to remove all, use revoke)")
    bad = sorted({ch for ch in letters if ch not in Right.__members__})
    if bad:
        raise BadInput(
            f"unknown right letter(s) {', '.join(map(repr, bad))} in {text!r}: "
            "use letters from R (read), W (write/sync), D (delete/administer)"
        )
    return frozenset(Right(ch) for ch in letters)


def format_rights(rights: Iterable[str]) -> str:
    """Rights in canonical order, e.g. ``"RWD"``; ``"-"`` for none."""
    have = set(rights)
    return "".join(r.value for r in _ORDER if r in have) or "-"


def stored_rights(text: str | None) -> frozenset[Right]:
    """The letters of a stored rights cell (anything else, e.g. from a hand edit, ignored)."""
    return frozenset(Right(ch) for ch in (text or "").upper() if ch in Right.__members__)


def as_right(right: Right | str) -> Right:
    try:
        return Right(str(right).strip().upper())
    except ValueError:
        raise BadInput(f"unknown right {right!r}: use R, W or D") from None


def check_district(district: int) -> int:
    """A district number as grants store it (``ALL_DISTRICTS`` or a positive number)."""
    if isinstance(district, bool) or not isinstance(district, int) or district < 0:
        raise BadInput(f"not a district number: {district!r} (a positive number, or all districts)")
    return district


def district_text(district: int) -> str:
    """``"district 275"``, or ``"all districts"``."""
    return "all districts" if district == ALL_DISTRICTS else f"district {district}"


def district_option(district: int) -> str:
    """The ``rights grant`` option naming ``district``."""
    return "--all-districts" if district == ALL_DISTRICTS else f"--district {district}"


def effective(rights: frozenset[Right]) -> frozenset[Right]:
    """W implies R for reading (history, reports); D does not imply R, on purpose."""
    return rights | {Right.R} if Right.W in rights else rights


def rights_on(grants: Grants, district: int) -> frozenset[Right]:
    """The letters that apply on ``district`` (as granted, W not expanded): the district's
    grant and the all-districts grant; on ``ALL_DISTRICTS``, the all-districts grant alone."""
    held = grants.get(ALL_DISTRICTS, frozenset())
    if district != ALL_DISTRICTS:
        held = held | grants.get(district, frozenset())
    return held


def held_text(grants: Grants, most: int = 6) -> str:
    """What a user holds, e.g. ``"RW on district 275"``, ``"R on all districts"``, ``"no
    rights"``: the all-districts grant first, then the districts in order."""
    parts = [
        f"{format_rights(grants[d])} on {district_text(d)}"
        for d in sorted(grants)
        if grants[d]  # sorted: ALL_DISTRICTS (0) first
    ]
    if not parts:
        return "no rights"
    if len(parts) > most:
        parts = [*parts[:most], f"{len(parts) - most} more districts"]
    return ", ".join(parts)


def refusal_message(name: str, wanted: Right, district: int, grants: Grants) -> str:
    """Who lacks what where, what they hold, and the grant to ask for."""
    # Grant sets exactly, so the suggestion keeps what the user holds on that district.
    suggested = format_rights(grants.get(district, frozenset()) | {wanted})
    return (
        f"user {name!r} lacks the {wanted.value} right ({RIGHT_MEANING[wanted]}) on "
        f"{district_text(district)}; they hold {held_text(grants)}; ask an administrator: "
        f"selective-sync rights grant {shlex.quote(name)} {suggested} {district_option(district)}"
    )


# ---------------------------------------------------------------- scope and refusals


@dataclass(frozen=True)
class Scope:
    """The districts a right reaches: every district, or these."""

    everywhere: bool
    districts: frozenset[int] = frozenset()

    def covers(self, district: int) -> bool:
        if self.everywhere:
            return True
        return district != ALL_DISTRICTS and district in self.districts

    @property
    def empty(self) -> bool:
        return not self.everywhere and not self.districts


@dataclass(frozen=True)
class Refusal:
    """One refused request, as the refusal audit records it."""

    user: str
    entry_point: str
    right: Right
    district: int
    asked: str
    message: str


def refused(refusal: Refusal) -> RightsError:
    """The RightsError of ``refusal`` (which it carries, for callers and tests)."""
    error = RightsError(refusal.message)
    error.refusal = refusal
    return error


# ---------------------------------------------------------------- the acting user


@dataclass(frozen=True)
class Actor:
    """The acting user of one entry point (a flow run, a CLI command, a request), with the
    grants read once from the store: what runs below checks ``actor.require(right,
    district)`` without reading them again. A refusal is recorded in the refusal audit of
    the store the grants came from (``rights_url``) before it is raised."""

    name: str
    grants_held: tuple[tuple[int, frozenset[Right]], ...] = ()
    entry_point: str = field(default="", compare=False)
    rights_url: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls, name: str, grants: Grants, *, entry_point: str = "", rights_url: str | None = None
    ) -> Actor:
        held = tuple(sorted((d, frozenset(r)) for d, r in grants.items() if r))
        return cls(name, held, entry_point, rights_url)

    @cached_property
    def grants(self) -> dict[int, frozenset[Right]]:
        return dict(self.grants_held)

    def at(self, entry_point: str) -> Actor:
        """The same actor, acting through ``entry_point`` (kept when it already has one)."""
        if self.entry_point or not entry_point:
            return self
        return replace(self, entry_point=entry_point)

    def rights_on(self, district: int) -> frozenset[Right]:
        """The letters that apply on ``district`` (W not expanded)."""
        return rights_on(self.grants, district)

    def holds(self, right: Right | str, district: int) -> bool:
        """Whether the actor may act with ``right`` on ``district`` (W counts as R);
        ``ALL_DISTRICTS`` asks for the right on every district (the state's view)."""
        return as_right(right) in effective(self.rights_on(check_district(district)))

    def scope(self, right: Right | str) -> Scope:
        """The districts on which the actor holds ``right``."""
        wanted = as_right(right)
        if wanted in effective(self.grants.get(ALL_DISTRICTS, frozenset())):
            return Scope(True)
        return Scope(
            False,
            frozenset(d for d, r in self.grants.items() if d and wanted in effective(r)),
        )

    def require(self, right: Right | str, district: int, *, asked: str = "") -> Actor:
        """Return the actor if it holds ``right`` on ``district``; otherwise record the
        refusal and raise RightsError naming the user, the right, the district, what they
        hold and the grant to ask for."""
        wanted = as_right(right)
        if self.holds(wanted, district):
            return self
        raise self.refuse(wanted, district, asked=asked)

    def refuse(
        self, right: Right | str, district: int, *, asked: str = "", message: str | None = None
    ) -> RightsError:
        """Record a refusal of ``right`` on ``district`` and return its RightsError (for
        the caller to raise); ``message`` replaces the standard one."""
        wanted = as_right(right)
        refusal = Refusal(
            user=self.name,
            entry_point=self.entry_point or "python",
            right=wanted,
            district=district,
            asked=(asked or "")[:MAX_ASKED_LEN],
            message=message or refusal_message(self.name, wanted, district, self.grants),
        )
        if self.rights_url is not None:
            from .store import record_refusal  # the store imports this module

            record_refusal(self.rights_url, refusal)
        return refused(refusal)
