"""Prefect retries, for the tasks whose core has no retry of its own (which layer retries
what, and why only one per key: ``selective_sync/sync/retry.py``)."""

from __future__ import annotations

from selective_sync.settings import Settings
from selective_sync.sync import RetryPolicy, is_transient

# Prefect's spread of a pause: between (1 - j) and (1 + j) times it.
RETRY_JITTER = 0.5


def retry_on_transient(task, task_run, state) -> bool:
    """Retry when the task failed on a transient fault (lost connection, lock, deadlock)."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def transient_retries(policy: RetryPolicy) -> dict:
    """Task options retrying transient faults only, on ``policy``'s budget and pauses."""
    return {
        "retries": policy.attempts - 1,
        "retry_delay_seconds": policy.base_delays(),
        "retry_jitter_factor": RETRY_JITTER,
        "retry_condition_fn": retry_on_transient,
    }


def sync_key_retries(settings: Settings) -> dict:
    """The per-key sync task's options: the budget the operator set, read per request."""
    return transient_retries(RetryPolicy.from_settings(settings))


# The I/O tasks (verification, find): their options are fixed when they are defined, so
# they take the settings' default budget (4 attempts, 0.5 s doubling), as before.
RETRY_TRANSIENT_FAULTS = transient_retries(
    RetryPolicy(
        attempts=Settings.model_fields["retry_attempts"].default,
        backoff_s=Settings.model_fields["retry_backoff_s"].default,
    )
)
