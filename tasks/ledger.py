"""Ledger tasks: open a request's row in the state database, and close it."""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from selective_sync.ledger import finish_request, open_request
from selective_sync.models import RequestStatus, SyncResult
from selective_sync.settings import get_settings

from .engines import engine_for
from .retry import RETRY_TRANSIENT_FAULTS


@task(
    name="open_request",
    task_run_name="open-request-{run_id}",
    cache_policy=NO_CACHE,
    **RETRY_TRANSIENT_FAULTS,
)
def open_request_task(
    run_id: str,
    run_name: str,
    district: int,
    object_name: str,
    requested_by: str,
    requested_at: datetime,
    check_dependencies: bool,
    dry_run: bool,
    keys: list[int],
) -> None:
    """Record the request In Progress in the state's ledger, before any key is written."""
    open_request(
        engine_for(get_settings().resolved_state_url),
        run_id=run_id,
        run_name=run_name,
        district=district,
        object_name=object_name,
        requested_by=requested_by,
        requested_at=requested_at,
        check_dependencies=check_dependencies,
        dry_run=dry_run,
        keys=keys,
    )


@task(
    name="finish_request",
    task_run_name="finish-request-{run_id}",
    cache_policy=NO_CACHE,
    **RETRY_TRANSIENT_FAULTS,
)
def finish_request_task(
    run_id: str, result: SyncResult, status: RequestStatus, message: str | None = None
) -> None:
    """Close the request in the ledger with its status and every key's final outcome."""
    finish_request(
        engine_for(get_settings().resolved_state_url),
        run_id,
        status,
        completed_at=result.completed_at or datetime.now().astimezone(),
        outcomes=[(result.object, o) for o in result.keys],
        message=message,
    )
