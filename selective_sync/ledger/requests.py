"""A request's row in the ledger: opened at the start, kept alive, closed at the end."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..models import KeyOutcome, RequestStatus
from ..schema import sync_key_outcome, sync_request
from .recorder import RecordedKey, utcnow

log = logging.getLogger(__name__)

CLI_ORIGIN = "cli"
"""``sync_request.origin`` of a request the command line ran itself (no Prefect run)."""

NIGHTLY_ORIGIN = "nightly"
"""``sync_request.origin`` of a sync the nightly reconciliation ran inside a district's
reconciliation (no Prefect run of its own)."""


@dataclass(frozen=True)
class LedgerRequest:
    """One request as the ledger holds it (timestamps in UTC)."""

    run_id: str
    run_name: str
    district_number: int
    object: str
    requested_by: str
    requested_at: datetime
    completed_at: datetime | None
    status: RequestStatus
    check_dependencies: bool
    dry_run: bool
    key_count: int
    keys: list[int]
    succeeded: int | None
    message: str | None
    host: str | None
    pid: int | None
    heartbeat_at: datetime | None
    origin: str | None = None
    """None for a run of the ``selective-sync`` flow; ``CLI_ORIGIN`` for the CLI's own,
    ``NIGHTLY_ORIGIN`` for a sync of the nightly reconciliation."""

    @property
    def has_flow_run(self) -> bool:
        """Whether a Prefect flow run holds this request (its artifacts, its state)."""
        return self.origin is None


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def open_request(
    engine: Engine,
    *,
    run_id: str,
    run_name: str,
    district: int,
    object_name: str,
    requested_by: str,
    requested_at: datetime,
    check_dependencies: bool,
    dry_run: bool,
    keys: Sequence[int],
    origin: str | None = None,
) -> None:
    """Record a request as In Progress, with its keys and the process that runs it
    (``origin``: None for a flow run, ``CLI_ORIGIN`` for the command line's own run,
    ``NIGHTLY_ORIGIN`` for the nightly reconciliation's)."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(sync_request),
            [
                {
                    "run_id": run_id,
                    "run_name": run_name[:255],
                    "district_number": district,
                    "object": object_name,
                    "requested_by": requested_by,
                    "requested_at": _naive(requested_at),
                    "status": RequestStatus.IN_PROGRESS.value,
                    "check_dependencies": check_dependencies,
                    "dry_run": dry_run,
                    "key_count": len(keys),
                    "ids": ",".join(map(str, keys)),
                    "host": socket.gethostname()[:255],
                    "pid": os.getpid(),
                    "heartbeat_at": now,
                    "origin": origin,
                }
            ],
        )


def heartbeat(engine: Engine, run_id: str) -> None:
    """The request's process is alive (a request not heard from is taken as crashed)."""
    with engine.begin() as conn:
        conn.execute(
            update(sync_request)
            .where(sync_request.c.run_id == run_id, sync_request.c.completed_at.is_(None))
            .values(heartbeat_at=utcnow())
        )


def finish_request(
    engine: Engine,
    run_id: str,
    status: RequestStatus,
    *,
    completed_at: datetime,
    outcomes: Sequence[tuple[str, KeyOutcome]] = (),
    message: str | None = None,
) -> None:
    """Close the request: its status, and each key's final outcome.

    ``outcomes`` are ``(object, outcome)`` as the request ends, after the verification
    that follows the sync: a key's row is updated where that changed it (or added where
    none was recorded, e.g. a task that failed outright); ``written_at`` stays as the
    key's own transaction set it.
    """
    own = [o for name, o in outcomes]
    succeeded = sum(1 for o in own if o.outcome.succeeded) if own else None
    with engine.begin() as conn:
        recorded = {
            (row.object, int(row.record_key)): row
            for row in conn.execute(
                select(sync_key_outcome).where(sync_key_outcome.c.run_id == run_id)
            )
        }
        now = utcnow()
        for name, outcome in outcomes:
            found = recorded.get((name, int(outcome.key)))
            values = {
                "outcome": outcome.outcome.value,
                "reason": outcome.reason,
                "attempts": int(outcome.attempts),
                "parents_synced": "\n".join(outcome.parents_synced) or None,
            }
            if found is None:
                conn.execute(
                    insert(sync_key_outcome),
                    [
                        values
                        | {
                            "run_id": run_id,
                            "object": name,
                            "record_key": int(outcome.key),
                            "written_at": None,
                            "recorded_at": now,
                        }
                    ],
                )
            elif any(getattr(found, k) != v for k, v in values.items()):
                t = sync_key_outcome.c
                conn.execute(
                    update(sync_key_outcome)
                    .where(t.run_id == run_id, t.object == name, t.record_key == int(outcome.key))
                    .values(values)
                )
        conn.execute(
            update(sync_request)
            .where(sync_request.c.run_id == run_id)
            .values(
                status=RequestStatus(status).value,
                completed_at=_naive(completed_at),
                succeeded=succeeded,
                message=message,
                heartbeat_at=now,
            )
        )


def read_requests(engine: Engine, district: int, limit: int = 50) -> list[LedgerRequest]:
    """The district's requests, newest first."""
    query = (
        select(sync_request)
        .where(sync_request.c.district_number == district)
        .order_by(sync_request.c.requested_at.desc(), sync_request.c.run_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_request(row) for row in conn.execute(query)]


def unfinished_requests(engine: Engine, district: int) -> list[LedgerRequest]:
    """The district's requests the ledger still has In Progress (running, or ended
    without being able to say so)."""
    t = sync_request.c
    query = select(sync_request).where(
        t.district_number == district, t.status == RequestStatus.IN_PROGRESS.value
    )
    with engine.connect() as conn:
        return [_request(row) for row in conn.execute(query)]


def read_request(engine: Engine, run_id: str) -> LedgerRequest | None:
    with engine.connect() as conn:
        row = conn.execute(select(sync_request).where(sync_request.c.run_id == run_id)).first()
    return None if row is None else _request(row)


def read_keys(engine: Engine, run_id: str) -> list[RecordedKey]:
    """Every key outcome the request recorded (its own keys and parents synced first)."""
    t = sync_key_outcome.c
    query = select(sync_key_outcome).where(t.run_id == run_id).order_by(t.object, t.record_key)
    with engine.connect() as conn:
        return [
            RecordedKey(
                object=row.object,
                key=int(row.record_key),
                outcome=row.outcome,
                reason=row.reason,
                attempts=int(row.attempts),
                parents_synced=row.parents_synced.split("\n") if row.parents_synced else [],
                written_at=_aware(row.written_at),
                recorded_at=_aware(row.recorded_at),
            )
            for row in conn.execute(query)
        ]


def _request(row) -> LedgerRequest:
    return LedgerRequest(
        run_id=row.run_id,
        run_name=row.run_name,
        district_number=int(row.district_number),
        object=row.object,
        requested_by=row.requested_by,
        requested_at=_aware(row.requested_at),
        completed_at=_aware(row.completed_at),
        status=RequestStatus(row.status),
        check_dependencies=bool(row.check_dependencies),
        dry_run=bool(row.dry_run),
        key_count=int(row.key_count),
        keys=[int(k) for k in row.ids.split(",")] if row.ids else [],
        succeeded=None if row.succeeded is None else int(row.succeeded),
        message=row.message,
        host=row.host,
        pid=row.pid,
        heartbeat_at=_aware(row.heartbeat_at),
        origin=row.origin,
    )


def find_requests(engine: Engine, text: str, limit: int = 6) -> list[LedgerRequest]:
    """Requests whose run id starts with ``text`` (lower case) or whose name does."""
    t = sync_request.c
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = (
        select(sync_request)
        .where(
            or_(
                t.run_id.like(pattern.lower(), escape="\\"),
                t.run_name.like(pattern, escape="\\"),
            )
        )
        .order_by(t.requested_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_request(row) for row in conn.execute(query)]


def keys_done(engine: Engine, run_ids: Sequence[str]) -> dict[str, int]:
    """How many of each request's own keys have an outcome recorded (its progress)."""
    if not run_ids:
        return {}
    t, r = sync_key_outcome.c, sync_request.c
    query = (
        select(t.run_id, func.count())
        .select_from(sync_key_outcome.join(sync_request, r.run_id == t.run_id))
        .where(t.run_id.in_(list(run_ids)), t.object == r.object)
        .group_by(t.run_id)
    )
    with engine.connect() as conn:
        return {run_id: int(n) for run_id, n in conn.execute(query)}


def mark_ended(engine: Engine, run_id: str, status: RequestStatus, message: str | None) -> bool:
    """End a request still In Progress as ``status`` (its process is gone); True if it was."""
    t = sync_request.c
    with engine.begin() as conn:
        done = conn.execute(
            update(sync_request)
            .where(t.run_id == run_id, t.status == RequestStatus.IN_PROGRESS.value)
            .values(status=RequestStatus(status).value, completed_at=utcnow(), message=message)
        )
    return done.rowcount > 0


def delete_request(engine: Engine, run_id: str) -> None:
    """Remove a request and its key outcomes from the ledger (keys first: a repeat after
    an interruption still finds the request, and finishes)."""
    with engine.begin() as conn:
        conn.execute(delete(sync_key_outcome).where(sync_key_outcome.c.run_id == run_id))
    with engine.begin() as conn:
        conn.execute(delete(sync_request).where(sync_request.c.run_id == run_id))


class Heartbeat:
    """Keeps a request's ``heartbeat_at`` fresh from a background thread while it runs.

    A request whose heartbeat is older than a few intervals has lost its process (killed,
    machine gone): readers show it as Crashed (``selective_sync.history``)."""

    def __init__(self, engine: Engine, run_id: str, interval_s: float):
        self.engine, self.run_id, self.interval_s = engine, run_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                heartbeat(self.engine, self.run_id)
            except SQLAlchemyError as exc:  # the next beat tries again
                log.warning("heartbeat of request %s not written: %s", self.run_id, exc)
