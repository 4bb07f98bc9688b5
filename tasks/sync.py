"""Sync tasks: one key per task run, or a batch of keys with per-key transactions."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from selective_sync.ledger import KeyRecorder
from selective_sync.models import KeyOutcome
from selective_sync.registry import get_object
from selective_sync.settings import Settings, get_settings, resolve_district
from selective_sync.sync import (
    RetryPolicy,
    sync_key,
    sync_keys,
    sync_with_dependencies,
)

from .engines import engine_for
from .retry import RETRY_TRANSIENT_FAULTS, sync_key_retries


@task(
    name="sync_key",
    task_run_name="sync-{object_name}-{key}",
    cache_policy=NO_CACHE,
    # Prefect's retries are this task's one retry layer (sync_key itself does not retry);
    # a request takes its budget from the settings through key_task().
    **RETRY_TRANSIENT_FAULTS,
)
def sync_key_task(
    object_name: str,
    district: int,
    key: int,
    check_dependencies: bool,
    dry_run: bool,
    run_id: str | None = None,
) -> KeyOutcome:
    """Copy one key with its whole hierarchy from district to state in one transaction."""
    settings = get_settings()
    config = resolve_district(settings, district)
    engines = (engine_for(config.url), engine_for(settings.resolved_state_url))
    spec = get_object(object_name)
    context = TaskRunContext.get()
    runs = context.task_run.run_count if context is not None else 1
    # Prefect's earlier runs of this task are the key's earlier attempts.
    recorder = KeyRecorder(run_id, attempt_offset=runs - 1) if run_id else None
    sync = sync_with_dependencies if check_dependencies else sync_key
    outcome = sync(*engines, spec, config.number, key, dry_run=dry_run, recorder=recorder)
    outcome.attempts = runs
    return outcome


@task(
    name="sync_batch",
    task_run_name="sync-{object_name}-batch-{batch_number}",
    cache_policy=NO_CACHE,
    # No Prefect retries: each key retries inside the batch (RetryPolicy), and a batch
    # retried whole would give its keys a second budget.
)
def sync_batch_task(
    object_name: str,
    district: int,
    keys: list[int],
    batch_number: int,
    check_dependencies: bool,
    dry_run: bool,
    run_id: str | None = None,
) -> list[KeyOutcome]:
    """Sync a batch of keys, each in its own transaction with its own retry budget."""
    settings = get_settings()
    config = resolve_district(settings, district)
    return sync_keys(
        engine_for(config.url),
        engine_for(settings.resolved_state_url),
        get_object(object_name),
        config.number,
        keys,
        check_dependencies=check_dependencies,
        dry_run=dry_run,
        retry=RetryPolicy.from_settings(settings),
        recorder=KeyRecorder(run_id) if run_id else None,
    )


def key_task(settings: Settings):
    """``sync_key_task`` with the retry budget of ``settings`` (one key, one task run)."""
    return sync_key_task.with_options(**sync_key_retries(settings))
