"""What the command line needs from the orchestration layer, handed to it at start-up.

The core never imports the flows: the ``selective-sync`` entry point (``flows.cli``) builds
a backend on the Prefect API and calls ``configure`` before any command runs, so commands
run flows and read the stored history and summaries through this interface alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from selective_sync.errors import SelectiveSyncError

if TYPE_CHECKING:
    from selective_sync.history.store import HistoryStore
    from selective_sync.models import DistrictVerification, SyncResult
    from selective_sync.verification.codec import SummaryStore


class Backend(Protocol):
    """The stores and flows the CLI uses."""

    @property
    def history(self) -> HistoryStore: ...

    @property
    def summaries(self) -> SummaryStore: ...

    def run_sync(
        self,
        *,
        object: str,
        ids: str,
        requested_by: str,
        district: int | None,
        check_dependencies: bool,
        dry_run: bool,
    ) -> SyncResult:
        """Run one Selective Sync request (the ``selective-sync`` flow) and return its result."""
        ...

    def run_verification(
        self, *, district: int, objects: list[str] | None, requested_by: str
    ) -> DistrictVerification:
        """Verify (and store) the district's objects (the ``verification-summary`` flow)."""
        ...


_configured: Backend | None = None


def configure(backend: Backend) -> None:
    """Give the CLI its backend (the entry point does this once, before any command)."""
    global _configured
    _configured = backend


def backend() -> Backend:
    """The configured backend; a clear error when the CLI was started without one."""
    if _configured is None:
        raise SelectiveSyncError(
            "the command line was started without its Prefect backend: run the "
            "`selective-sync` command (or `python -m flows.cli`)"
        )
    return _configured
