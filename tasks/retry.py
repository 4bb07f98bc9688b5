"""Retry policy for I/O tasks: only transient database faults are retried."""

from __future__ import annotations

from prefect.tasks import exponential_backoff

from selective_sync.sync import is_transient

TRANSIENT_RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=0.5)
RETRY_JITTER = 0.5


def retry_on_transient(task, task_run, state) -> bool:
    """Retry when the task failed on a transient fault (lost connection, lock, deadlock)."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


# The retry settings of every I/O task: transient faults only, exponential backoff + jitter.
RETRY_TRANSIENT_FAULTS = {
    "retries": TRANSIENT_RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_on_transient,
}
