"""How a request's keys are split into task runs (shared by the flow and bench/sync.py)."""

from __future__ import annotations

import math

from sqlalchemy.engine import make_url


def writers_in_flight(state_url: str, max_workers: int) -> int:
    """How many sync tasks may write at once.

    A SQLite state has one writer; more threads queueing on its lock only add contention
    (bench/sync.py, 10,000 keys: the sync core took 15.5 s summed over 32 batches with 2 in
    flight, 4.2 s over 4 batches with 1).
    """
    if make_url(state_url).get_backend_name() == "sqlite":
        return 1
    return max_workers


MIN_BATCH = 25
"""Keys a batch holds at least (but the last): a batch of one or two keys costs a task run
per key again, which is what batching a few keys (the nightly's) is meant to save."""


def plan_jobs(keys: list[int], per_key_task_limit: int, in_flight: int) -> list[list[int]]:
    """One job per key up to the limit; above it, about ``4 x in_flight`` (at least 8)
    batches of at least ``MIN_BATCH`` keys.

    Thousands of task runs overflow Prefect's event queue (task-run records are dropped), so
    large requests are batched; each key keeps its own transaction, outcome and retries.
    """
    if len(keys) <= per_key_task_limit:
        return [[key] for key in keys]
    size = max(MIN_BATCH, math.ceil(len(keys) / max(8, in_flight * 4)))
    return [keys[i : i + size] for i in range(0, len(keys), size)]
