"""What the command line needs from the orchestration layer, handed to it at start-up.

The commands run in this process without Prefect: a sync runs the core's request runner
(``selective_sync.sync.request``), the history and the stored summaries are read from the
state database. Only what Prefect alone holds goes through this interface, which the
``selective-sync`` entry point (``flows.cli``) sets with ``configure`` before any command
runs: the flow's runs (deleting an entry that has one, settling a run's request still In
Progress, a run the ledger does not have), and the UI's view when a Prefect server starts.
Nothing calls it on the common path, so ``import prefect`` is paid only there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from selective_sync.errors import SelectiveSyncError

if TYPE_CHECKING:
    from selective_sync.history.store import FlowRuns, LedgerHistoryStore


class Backend(Protocol):
    """What the CLI needs the Prefect API for."""

    def flow_runs(self) -> FlowRuns:
        """The ``selective-sync`` flow's runs in the Prefect API."""
        ...

    def refresh_ui(self, api_url: str) -> None:
        """A Prefect server has started at ``api_url``: bring the UI's view up to date (each
        district's View History table from the ledger, with the requests the command line
        ran; summaries stored as artifacts only, copied into the state database once)."""
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


def history_store() -> LedgerHistoryStore:
    """The Sync History on the ledger; the backend's flow runs only when they are needed (a
    flow run's request is settled from its run only once its heartbeat went quiet: a
    command need not reach a Prefect API because a run is in progress somewhere)."""
    from selective_sync.history.store import LedgerHistoryStore

    return LedgerHistoryStore(lambda: backend().flow_runs(), api_at_hand=False)


def refresh_ui(api_url: str) -> None:
    """``Backend.refresh_ui``, best effort: a failure is one warning line (the tables are
    rewritten again at every run's end and by ``history rebuild-artifacts``)."""
    from rich.text import Text

    from .common import err_console

    try:
        backend().refresh_ui(api_url)
    except Exception as exc:
        err_console.print(Text(f"warning: the UI's history was not brought up to date: {exc}"))
