"""Drift alerts, the plain part: from a run's figures, which thresholds are crossed and the
event that says so.

After each Verification Summary run and each district's reconciliation the flows emit one
event (``tasks/alerts.py``) whose name says whether a threshold was crossed:

- ``selective-sync.verification.alert`` / ``selective-sync.verification.ok``
- ``selective-sync.reconcile.alert`` / ``selective-sync.reconcile.ok``

Its resource is the district (``selective-sync.district.<number>``) and its payload holds
the figures, the thresholds, which were crossed and a ready-made message. Automations on
the server (``python -m flows.alerts setup --block NAME``) turn the ``.alert`` events into
notifications. Nothing here knows Prefect.

Accuracies are compared as the reports print them (:func:`format_accuracy`, floored to
hundredths): an alert never quotes a figure that does not cross its threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .models import DistrictVerification
from .reconcile import DistrictReconciliation
from .settings import Settings
from .text import format_accuracy

EVENT_PREFIX = "selective-sync"
VERIFICATION_ALERT = f"{EVENT_PREFIX}.verification.alert"
VERIFICATION_OK = f"{EVENT_PREFIX}.verification.ok"
RECONCILE_ALERT = f"{EVENT_PREFIX}.reconcile.alert"
RECONCILE_OK = f"{EVENT_PREFIX}.reconcile.ok"
ALERT_EVENTS = (VERIFICATION_ALERT, RECONCILE_ALERT)
RESOURCE_PREFIX = f"{EVENT_PREFIX}.district."


class Threshold(StrEnum):
    """The thresholds an event can cross (named in its payload's ``crossed``)."""

    ACCURACY_BELOW = "accuracy_below"
    ACCURACY_DROP = "accuracy_drop"
    FAILED_KEYS = "failed_keys"


@dataclass(frozen=True)
class AlertThresholds:
    """When a run alerts: accuracy below ``below_percent``, a drop of more than
    ``drop_points`` since the previous run, any key left failing by a reconciliation.
    None (or False) turns a threshold off."""

    below_percent: float | None = 99.0
    drop_points: float | None = 1.0
    failed_keys: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertThresholds:
        return cls(
            below_percent=settings.alert_below_percent,
            drop_points=settings.alert_drop_points,
            failed_keys=settings.alert_on_failed_keys,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "below_percent": self.below_percent,
            "drop_points": self.drop_points,
            "failed_keys": self.failed_keys,
        }


@dataclass(frozen=True)
class DriftEvent:
    """One event to emit: its name, the district it concerns and what it says."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]

    @property
    def crossed(self) -> list[str]:
        return list(self.payload["crossed"])

    @property
    def alert(self) -> bool:
        return bool(self.payload["crossed"])


def district_resource(number: int, name: str) -> dict[str, str]:
    """The event resource of a district: ``selective-sync.district.<number>``."""
    return {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{int(number)}",
        "prefect.resource.name": f"{int(number)} {name}",
        "selective-sync.district": str(int(number)),
    }


def _hundredths(distinct: int, errors: int) -> int:
    """The accuracy in hundredths of a percent, as :func:`format_accuracy` prints it."""
    text = format_accuracy(distinct, errors).rstrip("%")
    whole, _, part = text.partition(".")
    return int(whole) * 100 + int(part)


def _points(hundredths: int, signed: bool = True) -> str:
    """Points of accuracy from hundredths: ``-2.29``, ``+0.10``, ``0.00``."""
    sign = "+" if hundredths > 0 else "-" if hundredths < 0 else ""
    return f"{sign if signed else ''}{abs(hundredths) // 100}.{abs(hundredths) % 100:02d}"


def previous_counts(rows: Sequence[Mapping[str, Any]] | None) -> tuple[int, int] | None:
    """(distinct, errors) of a stored summary's rows: the district before this run."""
    if not rows:
        return None
    return sum(int(r["distinct"]) for r in rows), sum(int(r["errors"]) for r in rows)


def verification_event(
    summary: DistrictVerification,
    previous: tuple[int, int] | None,
    thresholds: AlertThresholds,
) -> DriftEvent:
    """The event of one Verification Summary run: the district's overall accuracy, its
    errors and the change since the previous run (``previous``: its distinct and errors)."""
    distinct = sum(o.distinct for o in summary.objects)
    errors = sum(o.errors for o in summary.objects)
    now = _hundredths(distinct, errors)
    accuracy = format_accuracy(distinct, errors)
    change = None if previous is None else now - _hundredths(*previous)
    crossed: list[str] = []
    reasons: list[str] = []
    if thresholds.below_percent is not None and now < round(thresholds.below_percent * 100):
        crossed.append(Threshold.ACCURACY_BELOW)
        reasons.append(f"accuracy {accuracy} is below {thresholds.below_percent:.2f}%")
    if (
        thresholds.drop_points is not None
        and change is not None
        and -change > round(thresholds.drop_points * 100)
    ):
        crossed.append(Threshold.ACCURACY_DROP)
        reasons.append(
            f"accuracy dropped {_points(-change, signed=False)} points since the previous run "
            f"(more than {thresholds.drop_points:.2f})"
        )
    since = (
        "first run"
        if previous is None
        else f"previous {format_accuracy(*previous)}, {_points(change)} points"
    )
    figures = f"accuracy {accuracy} ({since}), {errors:,} errors in {distinct:,} keys"
    payload = {
        "kind": "verification",
        "district": summary.district_number,
        "district_name": summary.district_name,
        "accuracy": accuracy,
        "accuracy_percent": now / 100,
        "distinct": distinct,
        "errors": errors,
        "previous_accuracy": None if previous is None else format_accuracy(*previous),
        "change_points": None if change is None else change / 100,
        "objects": [
            {
                "object": o.object,
                "accuracy": format_accuracy(o.distinct, o.errors),
                "errors": o.errors,
                "verified_at": o.verified_at.isoformat(),
            }
            for o in summary.objects
        ],
        "thresholds": thresholds.as_dict(),
        "crossed": [str(c) for c in crossed],
        "reasons": reasons,
        "summary": figures,
        "message": _message(summary.district_number, summary.district_name, figures, reasons),
    }
    return DriftEvent(
        VERIFICATION_ALERT if crossed else VERIFICATION_OK,
        district_resource(summary.district_number, summary.district_name),
        payload,
    )


def reconcile_event(district: DistrictReconciliation, thresholds: AlertThresholds) -> DriftEvent:
    """The event of one district's reconciliation: keys sent, fixed, left failing."""
    failed = sum(o.sent if o.error else o.failed for o in district.objects)
    problems = [p for p in [district.error, *(o.error for o in district.objects)] if p]
    sent = sum(o.sent for o in district.objects)
    succeeded = sum(o.succeeded for o in district.objects if not o.error)
    crossed: list[str] = []
    reasons: list[str] = []
    if thresholds.failed_keys and (failed or problems):
        crossed.append(Threshold.FAILED_KEYS)
        if failed:
            reasons.append(f"{failed:,} keys are left failing after the reconciliation")
        reasons += [f"error: {p}" for p in problems]
    figures = (
        f"{sent:,} keys sent, {succeeded:,} succeeded, {failed:,} failed, "
        f"{district.leftover:,} left for the next run"
    )
    payload = {
        "kind": "reconcile",
        "district": district.district_number,
        "district_name": district.district_name,
        "keys_sent": sent,
        "keys_succeeded": succeeded,
        "keys_failed": failed,
        "keys_left_over": district.leftover,
        "errors": problems,
        "objects": [
            {
                "object": o.object,
                "sent": o.sent,
                "failed": o.sent if o.error else o.failed,
                "accuracy_before": round(o.accuracy_before, 2),
                "accuracy_after": None if o.accuracy_after is None else round(o.accuracy_after, 2),
                "sync_run_id": o.sync_run_id,
            }
            for o in district.objects
        ],
        "thresholds": thresholds.as_dict(),
        "crossed": [str(c) for c in crossed],
        "reasons": reasons,
        "summary": figures,
        "message": _message(district.district_number, district.district_name, figures, reasons),
    }
    return DriftEvent(
        RECONCILE_ALERT if crossed else RECONCILE_OK,
        district_resource(district.district_number, district.district_name),
        payload,
    )


def _message(number: int, name: str, figures: str, reasons: list[str]) -> str:
    head = f"District {number} {name}: {figures}."
    if not reasons:
        return head + " No threshold crossed."
    return head + " Alert: " + "; ".join(reasons) + "."
