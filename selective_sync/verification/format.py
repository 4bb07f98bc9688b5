"""Plain-data forms of the Verification Summary (JSON output, artifacts)."""

from __future__ import annotations

from typing import Any

from selective_sync.models import DistrictVerification, ObjectVerification

DISTRICT_COLUMNS = ("District", "Name", "Overall Accuracy")
OBJECT_COLUMNS = (
    "Object",
    "Accuracy",
    "Timestamp",
    "Distinct",
    "At District",
    "At State",
    "Errors",
    "Missing at state",
    "Missing at district",
    "Mismatched",
)


def summary_to_dict(summary: DistrictVerification) -> dict[str, Any]:
    """The ``summary --json`` document."""
    return {
        "district": {
            "number": summary.district_number,
            "name": summary.district_name,
            "overall_accuracy": round(summary.overall_accuracy, 2),
        },
        "objects": [object_to_dict(o, round(o.accuracy, 2)) for o in summary.objects],
    }


def object_to_dict(o: ObjectVerification, accuracy: float | str) -> dict[str, Any]:
    """One object's figures as plain data (``--json``); ``accuracy`` as the caller shows it."""
    return {
        "object": o.object,
        "accuracy": accuracy,
        "verified_at": o.verified_at.isoformat(),
        "distinct": o.distinct,
        "at_district": o.at_district,
        "at_state": o.at_state,
        "errors": o.errors,
        "missing_at_state": o.missing_at_state,
        "missing_at_district": o.missing_at_district,
        "mismatched": o.mismatched,
    }
