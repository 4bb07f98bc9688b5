"""Turning task failures and the after-sync verification into honest per-key outcomes."""

from __future__ import annotations

from selective_sync.models import KeyOutcome, ObjectVerification, Outcome
from selective_sync.sync import is_transient
from selective_sync.text import first_line


def failure_outcome(key: int, exc: BaseException, attempts: int) -> KeyOutcome:
    """A key whose task failed outright (its retries, if any, are spent)."""
    transient = is_transient(exc)
    prefix = f"database fault after {attempts} attempts" if transient else "error"
    return KeyOutcome(
        key=key,
        outcome=Outcome.FAILED,
        reason=f"{prefix}: {first_line(exc)}",
        attempts=attempts,
        transient=transient,
    )


def apply_after_verification(
    outcomes: dict[int, KeyOutcome], after: ObjectVerification
) -> list[int]:
    """Fail any key reported synced/unchanged that still differs; return those keys."""
    still_differs: list[int] = []
    for issue in after.issues:
        outcome = outcomes.get(issue.key)
        if outcome is None or not outcome.outcome.succeeded:
            continue
        if issue.issue == "mismatched":
            detail = "; ".join(
                f"{d.column}: district {d.district!r}, state {d.state!r}" for d in issue.diffs
            )
        else:
            detail = issue.issue.replace("_", " ")
        outcome.outcome = Outcome.FAILED
        outcome.reason = f"still differs after sync: {detail}"
        still_differs.append(issue.key)
    return still_differs
