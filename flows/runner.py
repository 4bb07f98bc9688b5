"""The task runner for fan-outs, chosen by configuration (SELECTIVE_SYNC_TASK_RUNNER) when
each flow run starts, not when the flow module is imported."""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from selective_sync.settings import Settings, get_settings


def make_task_runner(settings: Settings | None = None) -> TaskRunner:
    """A bounded thread pool by default; Dask (prefect-dask) when configured."""
    settings = settings or get_settings()
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": settings.max_workers})
    return ThreadPoolTaskRunner(max_workers=settings.max_workers)


class ConfiguredTaskRunner(ThreadPoolTaskRunner):
    """What the flows are declared with: Prefect duplicates a flow's runner at the start of
    every run, and this one duplicates into the runner the settings name at that moment."""

    def duplicate(self) -> TaskRunner:  # type: ignore[override]
        return make_task_runner()
