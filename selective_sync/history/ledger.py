"""The Sync History read from the ledger in the state database (no Prefect API needed).

Every request that got as far as its first key is in the ledger (``selective_sync.ledger``)
with each key's outcome, so listing, showing and reporting need only the state database.
A request refused before it started (no W right, bad IDs) wrote nothing, not even there:
its run in Prefect says why. A request whose process is gone (killed, machine lost) stops
its heartbeat and reads as Crashed once three heartbeats are missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from selective_sync.db import make_engine, schema_hint
from selective_sync.errors import BadInput, StoreUnavailable
from selective_sync.history.entry import HistoryEntry
from selective_sync.ledger import (
    LedgerRequest,
    RecordedKey,
    find_requests,
    keys_done,
    read_keys,
    read_request,
    read_requests,
)
from selective_sync.models import KeyOutcome, Outcome, RequestStatus
from selective_sync.settings import configured_districts
from selective_sync.text import first_line, format_timestamp

if TYPE_CHECKING:
    from selective_sync.settings import Settings

MIN_ID_PREFIX = 4
MISSED_BEATS = 3


@contextmanager
def ledger_history(settings: Settings) -> Iterator[LedgerHistory]:
    """The Sync History in the state database's ledger (an engine for this call only)."""
    engine = make_engine(settings.resolved_state_url)
    try:
        yield LedgerHistory(
            engine,
            {d.number: d.name for d in configured_districts(settings)},
            settings.ledger_heartbeat_s,
        )
    except SQLAlchemyError as exc:
        raise StoreUnavailable(
            f"the Sync History could not be read from the state database: {first_line(exc)}"
            + schema_hint(exc)
        ) from exc
    finally:
        engine.dispose()


@dataclass
class LedgerHistory:
    """Sync History entries from one state database's ledger."""

    engine: Engine
    district_names: dict[int, str]
    heartbeat_s: float

    def entries(self, district: int, limit: int | None) -> list[HistoryEntry]:
        """The district's entries, newest first, without per-key outcomes."""
        requests = read_requests(self.engine, district, limit=limit or 1_000_000)
        live = [r.run_id for r in requests if r.status is RequestStatus.IN_PROGRESS]
        done = keys_done(self.engine, live)
        return [self.entry(r, None, done.get(r.run_id)) for r in requests]

    def find(
        self, run: str, *, list_matches: bool | Callable[[int], bool] = True
    ) -> LedgerRequest | None:
        """The request named by a run id, an id prefix or a run-name prefix; None when the
        ledger has none. Several matches are refused, listing those ``list_matches`` allows
        (a bool, or a test of each match's district: the reader's R)."""
        text = (run or "").strip()
        if not text:
            raise BadInput("no run given: use a run id (or its first characters) from history list")
        exact = read_request(self.engine, text.lower())
        if exact is not None:
            return exact
        by_id = len(text) >= MIN_ID_PREFIX and all(c in "0123456789abcdef-" for c in text.lower())
        matches = [
            r
            for r in find_requests(self.engine, text)
            if (by_id and r.run_id.startswith(text.lower())) or r.run_name.startswith(text)
        ]
        if len(matches) > 1:
            may_list = list_matches if callable(list_matches) else lambda _d: list_matches
            listed = [r for r in matches if may_list(r.district_number)]
            if not listed:
                raise BadInput(
                    f"{text!r} matches several Sync History entries; give more of the run id"
                )
            shown = ", ".join(f"{r.run_id[:8]} ({r.run_name})" for r in listed[:5])
            raise BadInput(
                f"{text!r} matches several Sync History entries: {shown}; give more of the run id"
            )
        return matches[0] if matches else None

    def full_entry(self, request: LedgerRequest) -> HistoryEntry:
        """The entry with every key's outcome, in the order the keys were asked."""
        return self.entry(request, read_keys(self.engine, request.run_id))

    def entry(
        self,
        request: LedgerRequest,
        recorded: list[RecordedKey] | None,
        done: int | None = None,
    ) -> HistoryEntry:
        status, failure = self.status(request)
        outcomes = None if recorded is None else ordered_outcomes(request, recorded)
        progress = None
        if status is RequestStatus.IN_PROGRESS and request.key_count:
            progress = 100.0 * (done or 0) / request.key_count
        return HistoryEntry(
            run_id=request.run_id,
            run_name=request.run_name,
            requested_at=request.requested_at,
            requested_by=request.requested_by,
            status=status,
            completed_at=request.completed_at if status.finished else None,
            object=request.object,
            keys=list(request.keys),
            records_succeeded=request.succeeded if status.finished else None,
            records_total=request.key_count,
            district=request.district_number,
            district_name=self.district_names.get(request.district_number),
            check_dependencies=request.check_dependencies,
            dry_run=request.dry_run,
            outcomes=outcomes,
            failure=failure,
            progress=progress,
            flow_run=request.has_flow_run,
            origin=request.origin,
        )

    def status(self, request: LedgerRequest) -> tuple[RequestStatus, str | None]:
        """The request's status as a person should see it, and why it failed."""
        if request.status is not RequestStatus.IN_PROGRESS:
            return request.status, request.message
        last = request.heartbeat_at or request.requested_at
        silent = datetime.now(UTC) - last
        if silent <= timedelta(seconds=MISSED_BEATS * self.heartbeat_s):
            return request.status, None
        where = f" ({request.host}, process {request.pid})" if request.host else ""
        return RequestStatus.CRASHED, (
            f"the process running this request{where} stopped: no sign of life since "
            f"{format_timestamp(last)}; every key is either fully synced or untouched, "
            "and the outcomes below are the keys it wrote"
        )


def ordered_outcomes(request: LedgerRequest, recorded: list[RecordedKey]) -> list[KeyOutcome]:
    """The request's own key outcomes in the order asked (parents synced first are in each
    key's ``parents_synced``, not listed apart)."""
    own = {r.key: r for r in recorded if r.object == request.object}
    return [
        KeyOutcome(
            key=key,
            outcome=Outcome(own[key].outcome),
            reason=own[key].reason,
            attempts=own[key].attempts,
            parents_synced=list(own[key].parents_synced),
        )
        for key in request.keys
        if key in own
    ]
