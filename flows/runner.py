"""The task runner for fan-outs, chosen by configuration (SELECTIVE_SYNC_TASK_RUNNER)."""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from selective_sync.settings import get_settings


def make_task_runner() -> TaskRunner:
    """A bounded thread pool by default; Dask (prefect-dask) when configured."""
    settings = get_settings()
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": settings.max_workers})
    return ThreadPoolTaskRunner(max_workers=settings.max_workers)
