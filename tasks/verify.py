"""Verification tasks."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from selective_sync.districts import resolve_district
from selective_sync.models import ObjectVerification
from selective_sync.registry import get_object
from selective_sync.settings import get_settings
from selective_sync.verify import verify_object

from .engines import engine_for
from .retry import RETRY_TRANSIENT_FAULTS


@task(
    name="verify_object",
    task_run_name="verify-{object_name}-{district}",
    cache_policy=NO_CACHE,
    **RETRY_TRANSIENT_FAULTS,
)
def verify_object_task(
    object_name: str, district: int, keys: list[int] | None = None
) -> ObjectVerification:
    """Verify one object for one district (every key, or the keys given)."""
    settings = get_settings()
    config = resolve_district(settings, district)
    return verify_object(
        engine_for(config.url),
        engine_for(settings.resolved_state_url),
        get_object(object_name),
        config.number,
        keys,
        chunk_rows=settings.verify_chunk_rows,
    )
