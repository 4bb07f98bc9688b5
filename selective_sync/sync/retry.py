"""Retrying transient faults: one layer per key, the same budget whatever the request size.

A transient fault (a lock, a deadlock, a lost connection: see ``faults.is_transient``) is
retried; a refusal never is. Each key is retried by exactly one layer, never by two nested:

- a request of up to ``SELECTIVE_SYNC_PER_KEY_TASK_LIMIT`` keys runs one Prefect task per
  key; ``sync_key`` raises TransientFault and **Prefect's task retries** are the layer
  (``tasks.retry.sync_key_retries``), so each retry shows in the UI as the task run's
  AwaitingRetry state and ``outcome.attempts`` is the task run's run count;
- a larger request runs batch tasks; each key is retried **inside the batch** by the
  ``RetryPolicy`` below, and the batch task itself has no Prefect retries (a batch retried
  whole would give its keys a second budget: that is what made a key's budget depend on
  the request size). A batch whose keys keep exhausting their budgets (``abort_after`` in
  a row) stops: the database is taken as down and the keys not tried fail with 0 attempts.

Both layers take their budget from the settings, ``RetryPolicy.from_settings``:
``SELECTIVE_SYNC_RETRY_ATTEMPTS`` attempts in all (default 4), and after failed attempt n
a pause of ``SELECTIVE_SYNC_RETRY_BACKOFF_S * 2**(n-1)`` seconds (default 0.5, 1, 2 s)
plus jitter. The I/O tasks with no retry of their own inside (verification, find) keep
Prefect retries on the default budget (their options are fixed when they are defined).
Why Prefect for one task per key and not this policy: a per-key task run shows its
retries in the Prefect UI (AwaitingRetry), which operators watch and the tests check.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from selective_sync.errors import TransientFault
from selective_sync.text import first_line

from ..models import KeyOutcome, Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_EXHAUSTED = "transient fault after"
"""Start of the reason of a key whose retry budget ran out."""


@dataclass(frozen=True)
class RetryPolicy:
    """Per-key retry budget for transient faults: exponential backoff with jitter.

    Attempt n (1-based) that fails is followed by a pause of
    ``backoff_s * 2**(n-1) * (1 + jitter * random())`` before attempt n+1.
    """

    attempts: int = 4
    backoff_s: float = 0.5
    jitter: float = 0.3
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    @classmethod
    def from_settings(cls, settings) -> RetryPolicy:
        """The budget the operator set (SELECTIVE_SYNC_RETRY_ATTEMPTS / _RETRY_BACKOFF_S)."""
        return cls(attempts=settings.retry_attempts, backoff_s=settings.retry_backoff_s)

    def base_delays(self) -> list[float]:
        """The pauses between the attempts, before jitter (one fewer than the attempts)."""
        return [self.backoff_s * 2**n for n in range(self.attempts - 1)]

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed."""
        base = self.backoff_s * 2 ** (failed_attempt - 1)
        return base * (1 + self.jitter * random.random())


class Exhausted(Exception):
    """A key (or a read) spent its whole budget on transient faults."""

    def __init__(self, fault: TransientFault, attempts: int):
        super().__init__(str(fault))
        self.fault = fault
        self.attempts = attempts

    def outcome(self, key: int) -> KeyOutcome:
        return KeyOutcome(
            key,
            Outcome.FAILED,
            f"{TRANSIENT_EXHAUSTED} {self.attempts} attempts: {first_line(self.fault)}",
            attempts=self.attempts,
            transient=True,
        )


@dataclass
class Retrier:
    """Runs work under a policy, remembering the last fault (a batch abort's cause).

    With ``policy`` None a fault is raised at once: the caller's layer (Prefect) retries.
    """

    policy: RetryPolicy | None
    last_fault: TransientFault | None = None
    attempt: int = 0
    """The attempt under way (1-based) of the current ``call``."""

    def call(self, what: str, fn: Callable[[], T]) -> tuple[T, int]:
        """``(fn(), attempts it took)``; raises Exhausted when the budget runs out."""
        attempt = 0
        while True:
            attempt += 1
            self.attempt = attempt
            try:
                return fn(), attempt
            except TransientFault as fault:
                self.last_fault = fault
                if self.policy is None:
                    raise
                if attempt >= self.policy.attempts:
                    log.warning("%s: giving up after %d attempts: %s", what, attempt, fault)
                    raise Exhausted(fault, attempt) from fault
                pause = self.policy.delay(attempt)
                log.info("%s: %s; attempt %d again in %.2fs", what, fault, attempt + 1, pause)
                self.policy.sleep(pause)
