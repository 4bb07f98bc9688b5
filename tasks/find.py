"""Find IDs task: the district records that match an ad hoc filter."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from selective_sync.find import FindQuery, FindResult, SummaryKeys, find_records
from selective_sync.settings import get_settings, resolve_district

from .engines import engine_for
from .retry import RETRY_TRANSIENT_FAULTS


@task(
    name="find_records",
    task_run_name="find-{query.object}-{district}",
    cache_policy=NO_CACHE,
    **RETRY_TRANSIENT_FAULTS,
)
def find_records_task(
    query: FindQuery, district: int, keys: SummaryKeys | None = None
) -> FindResult:
    """List the district records that match the query (within the keys, when given)."""
    config = resolve_district(get_settings(), district)
    return find_records(engine_for(config.url), query, config.number, keys=keys)
