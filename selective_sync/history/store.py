"""Where Sync History entries are read and deleted: the interface the CLI and the core use.

The orchestration layer implements it (``flows.history_store``): entries are read from the
ledger in the state database (``history.ledger``), and deleting also removes the runs and
artifacts that show them in the Prefect UI. The core never imports that implementation,
it is handed one (see ``selective_sync.cli.backend``).
``user`` is a user name or an already authorised ``Actor``: each call refuses a user without
the right it needs on the district it touches (R to read, D to delete) before it reads or
deletes anything of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from selective_sync.history.entry import HistoryEntry

if TYPE_CHECKING:
    from selective_sync.rights import Actor


@dataclass
class ClearResult:
    """What ``clear`` did: the entries deleted, and the unfinished ones it left alone."""

    district: int
    deleted: list[HistoryEntry] = field(default_factory=list)
    skipped: list[HistoryEntry] = field(default_factory=list)
    runs_only: int = 0
    """Runs deleted that the ledger did not have (refused before they started)."""


class HistoryStore(Protocol):
    """List, show, delete and clear the Sync History entries of a district."""

    def list_entries(
        self, district: int | None = None, limit: int = 50, *, user: str | Actor
    ) -> list[HistoryEntry]:
        """The district's entries, newest first (default: the configured district)."""
        ...

    def get_entry(self, run: str, *, user: str | Actor) -> HistoryEntry:
        """The entry of ``run`` (a run id, an id prefix or a run name), with every key."""
        ...

    def delete_entry(self, run: str, *, user: str | Actor) -> HistoryEntry:
        """Delete one finished entry with everything it holds; returns the entry."""
        ...

    def clear(self, district: int | None = None, *, user: str | Actor) -> ClearResult:
        """Delete every finished entry of one district; runs in progress are left alone."""
        ...

    def rebuild_artifacts(self, district: int | None = None, *, user: str | Actor) -> int:
        """Write the district's history artifacts again from the ledger; entries shown."""
        ...
