"""Sync Request History reports made when someone first asks for them.

A selective sync links its PDF and DOCX reports from its run without making them: most
are never opened, and rendering both took about a second of every request. The first
request for one (the report server, when a link is opened; ``selective-sync report``)
renders it from what the history holds, the ledger in the state database (the request
and every key's outcome, the record a report is a view of), and keeps the file in the
report storage; every later request gets that file.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from ..db import make_engine
from ..errors import BadInput, ReportFailed, ReportNotReady, StoreUnavailable
from ..history.entry import HistoryEntry
from ..history.ledger import LedgerHistory
from ..settings import Settings, configured_districts, get_settings
from ..text import first_line
from .model import sync_report_from_result
from .storage import ReportStorage, StoredReport

log = logging.getLogger(__name__)


def how_to_build(run_id: str, fmt: str) -> str:
    return f"selective-sync report {run_id} --format {fmt} -o FILE"


def _unfinished(entry: HistoryEntry) -> str:
    return f"run {entry.run_id} is {entry.status}: its report is made once it has finished"


class SyncReports:
    """Stored Sync Request History reports, rendered from the ledger on first request."""

    def __init__(self, storage: ReportStorage, settings: Settings) -> None:
        self.storage, self.settings = storage, settings
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SyncReports:
        settings = settings or get_settings()
        return cls(ReportStorage.from_settings(settings), settings)

    def path(self, ref: StoredReport, entry: HistoryEntry | None = None) -> Path:
        """The stored file of ``ref``, rendered first if nobody asked for it before (once,
        however many ask at the same time). ``entry``: the request as already read (else
        read from the ledger).

        ReportNotReady when the ledger has no finished request of that run; ReportFailed
        when rendering or storing fails (nothing is kept then)."""
        target = self.storage.path(ref)
        if target.is_file():
            return target
        if entry is not None and not entry.finished:
            raise ReportNotReady(_unfinished(entry))
        with self._lock(target):
            if target.is_file():  # made while this request waited
                return target
            entry = entry or self.entry(ref.run_id)
            try:
                report = sync_report_from_result(entry.to_sync_result(), datetime.now(UTC))
                self.storage.save(ref, report)
            except Exception as exc:  # noqa: BLE001 (any renderer fault: say how to get it)
                log.error("rendering %s of run %s failed: %s", ref.title, ref.run_id, exc)
                raise ReportFailed(
                    f"the {ref.title} of run {ref.run_id} could not be made "
                    f"({first_line(exc)}); build it with: {how_to_build(ref.run_id, ref.fmt)}"
                ) from exc
        return target

    def entry(self, run_id: str) -> HistoryEntry:
        """The finished request of ``run_id`` with every key's outcome, from the ledger."""
        engine = make_engine(self.settings.resolved_state_url)
        try:
            names = {d.number: d.name for d in configured_districts(self.settings)}
            history = LedgerHistory(engine, names, self.settings.ledger_heartbeat_s)
            request = history.find(run_id, list_matches=False)
            if request is None:
                raise ReportNotReady(
                    f"run {run_id} is no selective sync in the Sync History (deleted, or "
                    "refused before it started)"
                )
            entry = history.full_entry(request)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"the Sync History could not be read from the state database: {first_line(exc)}"
            ) from exc
        except BadInput as exc:
            raise ReportNotReady(str(exc)) from exc
        finally:
            engine.dispose()
        if not entry.finished:
            raise ReportNotReady(_unfinished(entry))
        return entry

    def _lock(self, target: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(target, threading.Lock())
