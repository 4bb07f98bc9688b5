"""Where Sync History entries are read and deleted: the interface, and its implementation on
the ledger.

Entries are read from the ledger in the state database (``history.ledger``): listing and
showing need no Prefect API. What only Prefect holds sits behind ``FlowRuns``, which the
orchestration layer implements (``flows.history_store``) and hands in as a factory, so the
API (and ``import prefect``) is reached only when there is something there: a run of the
``selective-sync`` flow to delete or to settle (its request still In Progress in the ledger),
a run the ledger does not have (refused before it started), the View History table to
rewrite after deleting a flow's run. A request the command line ran itself has no Prefect
run: deleting it from the command line touches the ledger and its report files only, and
the View History table drops it at its next rewrite (at once when deleted from the UI).
``user`` is a user name or an already authorised ``Actor``: each call refuses a user without
the right it needs on the district it touches (R to read, D to delete) before it reads or
deletes anything of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from selective_sync.errors import BadInput
from selective_sync.history.entry import HistoryEntry
from selective_sync.history.ledger import LedgerHistory, ledger_history
from selective_sync.ledger import LedgerRequest, delete_request, unfinished_requests
from selective_sync.models import RequestStatus
from selective_sync.rights import ALL_DISTRICTS, Right, authorise
from selective_sync.settings import get_settings, resolve_district

if TYPE_CHECKING:
    from selective_sync.rights import Actor
    from selective_sync.settings import Settings

DEFAULT_LIMIT = 50
ENTRY_POINT = "api:history"
"""Where a caller that passes a user name (not an authorised Actor) acts from."""
# A refusal check a FlowRuns call makes on a run it found: (district or None, run id).
Check = Callable[[int | None, str], None]


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


class FlowRuns(Protocol):
    """What only the Prefect API holds about the flow's runs (``flows.history_store``)."""

    def settle(self, history: LedgerHistory, requests: list[LedgerRequest]) -> int:
        """Close in the ledger the In Progress requests whose flow run has ended."""
        ...

    def get_entry(self, run: str, *, may_read: Callable[[int], bool], check: Check) -> HistoryEntry:
        """The entry of a run the ledger does not have; BadInput when there is none.
        Several matches list only those of districts ``may_read``; ``check`` refuses the
        run found (its district) before its entry is returned."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Delete the flow run's artifacts, then the run."""
        ...

    def delete_unrecorded(
        self, run: str, *, may_read: Callable[[int], bool], check: Check
    ) -> HistoryEntry:
        """Delete a finished run the ledger does not have; BadInput when there is none.
        ``check`` refuses the run found (its district) before anything is deleted."""
        ...

    def clear_unrecorded(self, district: int, recorded: set[str]) -> int:
        """Delete the district's finished runs that are not ``recorded``; how many."""
        ...

    def refresh_table(self, district: int) -> None:
        """Rewrite the district's View History table from the ledger."""
        ...


class LedgerHistoryStore:
    """``HistoryStore`` on the state database's ledger; ``runs`` gives the ``FlowRuns``
    (called only when the Prefect API is needed; None: never)."""

    def __init__(
        self,
        runs: Callable[[], FlowRuns] | None = None,
        settings: Settings | None = None,
        *,
        api_at_hand: bool = True,
        entry_point: str = ENTRY_POINT,
    ):
        self.entry_point = entry_point
        self._runs_factory = runs
        self._runs: FlowRuns | None = None
        self.settings = settings
        self.api_at_hand = api_at_hand
        """True where the Prefect API is the caller's anyway (the flows): settle every flow
        run's request still In Progress, rewrite the View History table after any delete.
        False (the CLI): reach for it only when there is no other way: a request whose
        heartbeat went quiet (a live run records its own end), a flow run to delete."""

    def runs(self, run: str | None = None) -> FlowRuns:
        """The ``FlowRuns`` (made on first use); ``run``: what was looked for, named in the
        error when there is no Prefect API to look in."""
        if self._runs is None:
            if self._runs_factory is None:
                raise BadInput(
                    f"no Sync History entry matches {run!r}: use a run id (or its first "
                    "characters) or a run name from history list"
                )
            self._runs = self._runs_factory()
        return self._runs

    def _settings(self) -> Settings:
        return self.settings or get_settings()

    def _authorise(
        self, user: str | Actor, right: Right | None = None, district: int | None = None, asked=""
    ) -> Actor:
        return authorise(
            user,
            right,
            district,
            entry_point=self.entry_point,
            asked=asked,
            settings=self._settings(),
        )

    def list_entries(
        self, district: int | None = None, limit: int = DEFAULT_LIMIT, *, user: str | Actor
    ) -> list[HistoryEntry]:
        """The district's entries, newest first (default: the configured district). Needs R
        on the district."""
        if limit <= 0:
            raise BadInput("limit must be positive")
        settings = self._settings()
        number = resolve_district(settings, district).number
        self._authorise(user, Right.R, number, f"list the Sync History of district {number}")
        with ledger_history(settings) as history:
            self._settle(history, unfinished_requests(history.engine, number))
            return history.entries(number, limit)

    def get_entry(self, run: str, *, user: str | Actor) -> HistoryEntry:
        """The entry of ``run`` (a run id, an id prefix or a run name), with every key.
        Needs R on the entry's district (checked once the run is found, before its entry is
        read). A run the ledger does not have is looked up in the Prefect API."""
        actor = reader_somewhere(self._authorise(user), Right.R, "show", run)
        with ledger_history(self._settings()) as history:
            request = history.find(run, list_matches=reads(actor))
            if request is not None:
                require_on(actor, Right.R, request.district_number, "show", request.run_id)
                if request.status is RequestStatus.IN_PROGRESS and self._settle(history, [request]):
                    request = history.find(request.run_id)
                return history.full_entry(request)
        return self.runs(run).get_entry(
            run,
            may_read=reads(actor),
            check=lambda district, run_id: require_on(actor, Right.R, district, "show", run_id),
        )

    def delete_entry(self, run: str, *, user: str | Actor) -> HistoryEntry:
        """Delete one finished entry: its flow run's artifacts and run (if it has one), its
        report files, then its ledger rows (last, so an interrupted delete is still listed
        and a repeat finishes). Needs D on the entry's district (checked once the run is
        found, before anything is deleted)."""
        actor = reader_somewhere(self._authorise(user), Right.D, "delete", run)
        settings = self._settings()
        with ledger_history(settings) as history:
            # D alone does not read: candidates are listed only from districts the user reads.
            request = history.find(run, list_matches=reads(actor))
            if request is not None:
                require_on(actor, Right.D, request.district_number, "delete", request.run_id)
                entry = history.entry(request, None)
                refuse_unfinished(entry)
                self._delete(history, entry, settings)
                if entry.flow_run or self.api_at_hand:
                    self.runs().refresh_table(entry.district)
                return entry
        return self.runs(run).delete_unrecorded(
            run,
            may_read=reads(actor),
            check=lambda district, run_id: require_on(actor, Right.D, district, "delete", run_id),
        )

    def clear(self, district: int | None = None, *, user: str | Actor) -> ClearResult:
        """Delete every finished entry of one district (default: the configured one). Needs D
        on the district.

        Entries of other districts are never touched; runs still in progress are left alone
        (deleting a run under a running flow would orphan what it publishes next). The
        district's flow runs the ledger does not have (refused ones) go too: the Prefect
        API is asked when the district has flow runs in the ledger or a server is
        configured (``PREFECT_API_URL``), not for a history of command-line requests only.
        """
        settings = self._settings()
        number = resolve_district(settings, district).number
        self._authorise(user, Right.D, number, f"clear the Sync History of district {number}")
        result = ClearResult(number)
        with ledger_history(settings) as history:
            entries = history.entries(number, limit=None)
            for entry in entries:
                if entry.finished:
                    self._delete(history, entry, settings)
                    result.deleted.append(entry)
                else:
                    result.skipped.append(entry)
        if self.api_at_hand or any(e.flow_run for e in entries) or _server_configured():
            runs = self.runs()
            result.runs_only = runs.clear_unrecorded(number, {e.run_id for e in entries})
            runs.refresh_table(number)
        return result

    def rebuild_artifacts(self, district: int | None = None, *, user: str | Actor) -> int:
        """Write the district's View History table again from the ledger (after Prefect's
        database was lost, moved or cleaned). Needs R on the district. Returns the entries
        it shows."""
        from selective_sync.history.table import TABLE_ROWS

        settings = self._settings()
        number = resolve_district(settings, district).number
        self._authorise(
            user, Right.R, number, f"rebuild the View History table of district {number}"
        )
        self.runs().refresh_table(number)
        with ledger_history(settings) as history:
            return len(history.entries(number, limit=TABLE_ROWS))

    def _delete(self, history: LedgerHistory, entry: HistoryEntry, settings: Settings) -> None:
        from selective_sync.reports.storage import ReportStorage  # renderers: not on reads

        if entry.flow_run:
            self.runs().delete_run(entry.run_id)
        # Its report files too, so the entry's download links stop working with it.
        ReportStorage.from_settings(settings).delete_run(entry.run_id)
        delete_request(history.engine, entry.run_id)

    def _settle(self, history: LedgerHistory, requests: list[LedgerRequest]) -> int:
        """Settle the flow runs' requests still In Progress (a command-line request has no
        run to ask: its own end, or its heartbeat's silence, says how it ended)."""
        pending = [
            r
            for r in requests
            if r.has_flow_run
            and (self.api_at_hand or history.status(r)[0] is not RequestStatus.IN_PROGRESS)
        ]
        if not pending or self._runs_factory is None:
            return 0
        return self.runs().settle(history, pending)


def _server_configured() -> bool:
    """A Prefect server is configured for this process (not the ephemeral API, whose start
    costs seconds): its runs refused before they started are worth asking for."""
    return bool(os.environ.get("PREFECT_API_URL"))


def refuse_unfinished(entry: HistoryEntry) -> None:
    if not entry.finished:
        raise BadInput(
            f"entry {entry.short_id} ({entry.run_name}) is {entry.status}: wait for it to "
            "finish (or cancel the run) before deleting it"
        )


def reads(actor: Actor) -> Callable[[int], bool]:
    """Whether ``actor`` reads a district's history (R there)."""
    return lambda district: actor.holds(Right.R, district)


def reader_somewhere(actor: Actor, right: Right, verb: str, run: str) -> Actor:
    """The actor, refused (on all districts) before any run is looked up when it holds
    ``right`` on no district at all: nothing, not even which flow a run is of, is told."""
    if actor.scope(right).empty:
        raise actor.refuse(
            right, ALL_DISTRICTS, asked=f"{verb} the Sync History entry {str(run).strip()[:36]}"
        )
    return actor


def require_on(actor: Actor, right: Right, district: int | None, verb: str, run_id: str) -> None:
    """Refuse (and record) ``verb`` on a history entry of a district without ``right``."""
    actor.require(
        right, district or ALL_DISTRICTS, asked=f"{verb} the Sync History entry {run_id[:8]}"
    )
