"""Where stored Verification Summaries are read: the interface the CLI and the core use.

The orchestration layer implements it on the Prefect API (``flows.verification_store``);
the core never imports that implementation, it is handed one (``selective_sync.cli.backend``).
``user``, when given (a user name or an authorised ``Actor``), must hold R on the district
(on all districts for the state's view).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from selective_sync.models import DistrictVerification
    from selective_sync.rights import Actor
    from selective_sync.verification.codec import AccuracyTrend
    from selective_sync.verification.state import StateSummary


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
