"""Emit a run's drift event to Prefect (the automations of ``flows.alerts`` notify on it)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from selective_sync.alerts import DriftEvent


@task(name="emit_drift_event", task_run_name="emit-{drift.event}", cache_policy=NO_CACHE)
def emit_drift_event(drift: DriftEvent) -> str | None:
    """Emit the district's drift event; returns its id (None when events are off)."""
    return emit_drift(drift)


def emit_drift(drift: DriftEvent) -> str | None:
    """Emit ``drift`` from the current flow or task run (no task run of its own); returns
    the event's id, None when events are off."""
    logger = get_run_logger()
    event = emit_event(event=drift.event, resource=drift.resource, payload=drift.payload)
    if event is None:
        logger.warning("Events are not sent here (no Prefect API): %s not emitted", drift.event)
        return None
    # INFO even for an alert: notifying is the automation's job, and a warning would print
    # on every CLI summary of a drifted district (the CLI shows Prefect's warnings).
    logger.info("Emitted %s: %s", drift.event, drift.payload["message"])
    return str(event.id)
