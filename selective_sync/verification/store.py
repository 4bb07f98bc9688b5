"""Where stored Verification Summaries are read: the interface, and its implementation on
the state database.

The record is the state database (``records``): the CLI, the flows, the reports and the
state's view all read it through ``DatabaseSummaryStore``, with no Prefect API. The
``verification-summary`` flow also shows each stored summary as Prefect artifacts (the
UI's view, ``flows.verification_store``); nothing reads them back but the one-time import
of summaries stored before the database held them.
``user``, when given (a user name or an authorised ``Actor``), must hold R on the district
(on all districts for the state's view).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from selective_sync.db import make_engine, schema_hint
from selective_sync.errors import BadInput, StoreUnavailable
from selective_sync.rights import ALL_DISTRICTS, Right, authorise
from selective_sync.settings import configured_districts, get_settings
from selective_sync.text import first_line
from selective_sync.verification.records import (
    current_rows,
    has_results,
    load_summary,
    store_results,
    trend,
)
from selective_sync.verification.state import state_summary, state_trend

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from selective_sync.models import DistrictVerification
    from selective_sync.rights import Actor
    from selective_sync.settings import Settings
    from selective_sync.verification.codec import AccuracyTrend
    from selective_sync.verification.state import StateSummary

DEFAULT_TREND_RUNS = 10
ENTRY_POINT = "api:verification"
"""Where a caller that passes a user name (not an authorised Actor) acts from."""


class SummaryStore(Protocol):
    """The district's latest stored summary, and each object's accuracy over past runs."""

    def load_latest_summary(
        self, district: int, *, user: str | Actor | None = None
    ) -> DistrictVerification | None:
        """The stored summary in full (figures, key lists, record issues); None if none."""
        ...

    def load_trend(
        self, district: int, runs: int = 10, *, user: str | Actor | None = None
    ) -> AccuracyTrend:
        """Each object's accuracy in the district's last ``runs`` runs, oldest first."""
        ...

    def load_state_summary(self, *, user: str | Actor | None = None) -> StateSummary:
        """Every configured district's stored figures, worst district first."""
        ...

    def load_state_trend(self, days: int = 10, *, user: str | Actor | None = None) -> AccuracyTrend:
        """The state's overall accuracy at the end of each of the last ``days`` days."""
        ...


class DatabaseSummaryStore:
    """``SummaryStore`` on the state database, plus what the verifying code stores.

    Each call opens (and disposes of) its own engine on the state database.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        """An engine on the state database for one call; a database fault is one line."""
        engine = make_engine(self.settings.resolved_state_url)
        try:
            yield engine
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                "the Verification Summary could not be read from or stored in the state "
                f"database: {first_line(exc)}{schema_hint(exc)}"
            ) from exc
        finally:
            engine.dispose()

    def _check(self, user: str | Actor | None, district: int, asked: str) -> None:
        """Refuse (and record) a ``user`` without R on ``district`` (``ALL_DISTRICTS``: the
        state's view); code that already authorised its caller passes no user."""
        if user is not None:
            authorise(
                user,
                Right.R,
                district,
                entry_point=ENTRY_POINT,
                asked=asked,
                settings=self.settings,
            )

    # ------------------------------------------------------------ SummaryStore

    def load_latest_summary(
        self, district: int, *, user: str | Actor | None = None, known=None
    ) -> DistrictVerification | None:
        """The district's current summary: per object its newest result, with its own
        ``verified_at`` and record issues; None when nothing is stored. Objects of
        ``known`` (a summary just verified) whose result is the current one are not read."""
        self._check(user, int(district), f"read the Verification Summary of district {district}")
        with self.engine() as engine:
            return load_summary(engine, int(district), known)

    def load_trend(
        self, district: int, runs: int = DEFAULT_TREND_RUNS, *, user: str | Actor | None = None
    ) -> AccuracyTrend:
        """Each object's accuracy in the district's last ``runs`` runs, oldest first."""
        self._check(user, int(district), f"read the accuracy trend of district {district}")
        if runs < 1:
            raise BadInput("the trend needs at least 1 run")
        with self.engine() as engine:
            return trend(engine, int(district), runs)

    def load_state_summary(self, *, user: str | Actor | None = None) -> StateSummary:
        """Every configured district's current figures (one read), worst district first."""
        self._check(user, ALL_DISTRICTS, "read the state's Verification Summary")
        districts = [(d.number, d.name) for d in configured_districts(self.settings)]
        with self.engine() as engine:
            stored = current_rows(engine, [n for n, _name in districts])
        return state_summary(districts, stored)

    def load_state_trend(
        self, days: int = DEFAULT_TREND_RUNS, *, user: str | Actor | None = None
    ) -> AccuracyTrend:
        """The state's overall accuracy at the end of each of the last ``days`` days with
        results (every district's last runs are read)."""
        self._check(user, ALL_DISTRICTS, "read the state's accuracy trend")
        numbers = [d.number for d in configured_districts(self.settings)]
        with self.engine() as engine:
            return state_trend([trend(engine, n, days) for n in numbers], days)

    # ------------------------------------------------------------ for the verifying code

    def latest_rows(self, district: int) -> list[dict[str, Any]] | None:
        """The rows of the district's current summary; None when nothing is stored."""
        with self.engine() as engine:
            return current_rows(engine, [int(district)]).get(int(district))

    def store(self, summary: DistrictVerification, run_id: str) -> list[dict[str, Any]]:
        """Store what ``summary`` holds as run ``run_id``'s results; returns their rows."""
        with self.engine() as engine:
            return store_results(engine, summary, str(run_id))

    def has_results(self, district: int) -> bool:
        """Whether anything is stored for ``district``."""
        with self.engine() as engine:
            return has_results(engine, int(district))
