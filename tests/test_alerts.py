"""Drift alerts: the decision (plain figures in, event out) and the events the flows emit on
a real Prefect API. The notification path on a real server is tests/integration/test_alerts.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from selective_sync.alerts import (
    RECONCILE_ALERT,
    RECONCILE_OK,
    VERIFICATION_ALERT,
    VERIFICATION_OK,
    AlertThresholds,
    previous_counts,
    reconcile_event,
    verification_event,
)
from selective_sync.models import DistrictVerification, ObjectVerification
from selective_sync.reconcile import (
    REQUESTER,
    DistrictReconciliation,
    ObjectPlan,
    ObjectReconciliation,
)
from selective_sync.settings import Settings

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def summary(distinct: int, errors: int, name: str = "MAPLE VALLEY") -> DistrictVerification:
    person = ObjectVerification(
        object="PersonIdentity",
        district_number=275,
        verified_at=NOW,
        at_district=distinct,
        at_state=distinct,
        mismatched=list(range(errors)),
    )
    return DistrictVerification(275, name, [person])


def test_accuracy_below_is_judged_on_the_printed_floored_figure():
    # 1 error in a million prints 99.99%: below 100, not below 99.99.
    one_in_a_million = summary(1_000_000, 1)
    crossed = verification_event(one_in_a_million, None, AlertThresholds(100.0, None))
    assert crossed.event == VERIFICATION_ALERT and crossed.crossed == ["accuracy_below"]
    assert crossed.payload["accuracy"] == "99.99%" and crossed.payload["errors"] == 1
    assert "accuracy 99.99% is below 100.00%" in crossed.payload["message"]
    fine = verification_event(one_in_a_million, None, AlertThresholds(99.99, None))
    assert fine.event == VERIFICATION_OK and fine.crossed == [] and not fine.alert
    assert fine.payload["previous_accuracy"] is None and fine.payload["change_points"] is None
    assert fine.payload["message"].endswith(
        "first run), 1 errors in 1,000,000 keys. No threshold crossed."
    )
    assert fine.resource == {
        "prefect.resource.id": "selective-sync.district.275",
        "prefect.resource.name": "275 MAPLE VALLEY",
        "selective-sync.district": "275",
    }


def test_a_drop_of_more_than_the_points_set_alerts():
    thresholds = AlertThresholds(below_percent=None, drop_points=1.0)
    # 100.00% -> 98.00%: 2 points.
    dropped = verification_event(summary(1000, 20), (1000, 0), thresholds)
    assert dropped.crossed == ["accuracy_drop"]
    assert dropped.payload["change_points"] == -2.0
    assert dropped.payload["previous_accuracy"] == "100.00%"
    assert "dropped 2.00 points since the previous run" in dropped.payload["message"]
    # Exactly 1 point is not more than 1.
    assert verification_event(summary(1000, 10), (1000, 0), thresholds).crossed == []
    # A rise never alerts; both thresholds can cross at once.
    assert verification_event(summary(1000, 0), (1000, 50), thresholds).crossed == []
    both = verification_event(summary(1000, 50), (1000, 0), AlertThresholds(99.0, 1.0))
    assert both.crossed == ["accuracy_below", "accuracy_drop"]


def test_previous_counts_of_stored_rows():
    assert previous_counts(None) is None and previous_counts([]) is None
    rows = [{"distinct": 10, "errors": 1}, {"distinct": "5", "errors": "0"}]
    assert previous_counts(rows) == (15, 1)


def reconciliation(failed: int = 0, error: str | None = None) -> DistrictReconciliation:
    plan = ObjectPlan(
        "Enrollment", keys=[1, 2, 3], missing_at_state=2, mismatched=1, missing_at_district=0
    )
    entry = ObjectReconciliation(plan, counts_before=(100, 3), counts_after=(200, 1))
    entry.synced, entry.failed, entry.error = 3 - failed, failed, error
    return DistrictReconciliation(275, "MAPLE VALLEY", [entry])


def test_reconcile_alerts_on_any_key_left_failing():
    thresholds = AlertThresholds()
    clean = reconcile_event(reconciliation(), thresholds)
    assert clean.event == RECONCILE_OK and clean.payload["keys_failed"] == 0
    failing = reconcile_event(reconciliation(failed=1), thresholds)
    assert failing.event == RECONCILE_ALERT and failing.crossed == ["failed_keys"]
    assert failing.payload["keys_failed"] == 1 and failing.payload["keys_succeeded"] == 2
    assert "1 keys are left failing" in failing.payload["message"]
    # A sync that failed outright leaves every key it was to send failing.
    broken = reconcile_event(reconciliation(error="state database down"), thresholds)
    assert broken.payload["keys_failed"] == 3 and broken.payload["errors"] == [
        "state database down"
    ]
    off = reconcile_event(reconciliation(failed=1), AlertThresholds(failed_keys=False))
    assert off.event == RECONCILE_OK


def test_threshold_settings(monkeypatch):
    monkeypatch.setenv("SELECTIVE_SYNC_ALERT_BELOW_PERCENT", "99.5")
    monkeypatch.setenv("SELECTIVE_SYNC_ALERT_DROP_POINTS", "off")
    monkeypatch.setenv("SELECTIVE_SYNC_ALERT_ON_FAILED_KEYS", "false")
    assert AlertThresholds.from_settings(Settings()) == AlertThresholds(99.5, None, False)
    for name, bad in (("BELOW_PERCENT", "101"), ("BELOW_PERCENT", "lots"), ("DROP_POINTS", "0")):
        monkeypatch.setenv(f"SELECTIVE_SYNC_ALERT_{name}", bad)
        with pytest.raises(ValidationError, match=f"alert_{name.lower()}"):
            Settings()
        monkeypatch.setenv(f"SELECTIVE_SYNC_ALERT_{name}", "1")


# ---------------------------------------------------------------- emitted by the flows


def read_events(name: str, district: int = 275) -> list[dict]:
    from prefect.client.orchestration import get_client

    body = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"id": [f"selective-sync.district.{district}"]},
        },
        "limit": 50,
    }
    with get_client(sync_client=True) as client:
        return client.request("POST", "/events/filter", json=body).json()["events"]


def wait_for_event(name: str, run_id: str, timeout: float = 60) -> dict:
    """The ``name`` event emitted by flow or task run ``run_id`` (events are persisted
    async)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(name):
            related = {r["prefect.resource.id"] for r in event.get("related", [])}
            if {f"prefect.flow-run.{run_id}", f"prefect.task-run.{run_id}"} & related:
                return event
        time.sleep(0.5)
    pytest.fail(f"no {name} event of run {run_id}")


@pytest.mark.usefixtures("prefect_api")
def test_verification_and_reconcile_runs_emit_their_events(demo, admin, monkeypatch):
    from flows.reconcile import reconcile
    from flows.verification_summary import verification_summary
    from selective_sync.rights import ALL_DISTRICTS, RightsStore

    monkeypatch.setenv("SELECTIVE_SYNC_ALERT_BELOW_PERCENT", "99.99")
    state = verification_summary(objects=["Enrollment"], requested_by=admin, return_state=True)
    assert state.is_completed(), state.message
    event = wait_for_event(VERIFICATION_ALERT, str(state.state_details.flow_run_id))
    assert event["payload"]["crossed"][0] == "accuracy_below"
    enrollment = {o["object"]: o for o in event["payload"]["objects"]}["Enrollment"]
    assert enrollment["errors"] == sum(len(v) for v in demo.manifest["Enrollment"].values())

    # Reconcile: a key the state refuses (an unmapped code) is left failing.
    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    refused = demo.manifest["will_fail"]["Enrollment"]["unmapped_code"]
    assert refused
    state = reconcile(districts=[275], objects=["Enrollment"], max_keys=2000, return_state=True)
    result = state.result(raise_on_failure=False)
    (district,) = result.districts  # each district is a task run: it emits the event
    failed = district.failed
    assert failed >= 1
    event = wait_for_event(RECONCILE_ALERT, district.run_id)
    payload = event["payload"]
    assert payload["keys_failed"] == failed and payload["crossed"] == ["failed_keys"]
    assert payload["keys_sent"] == district.sent
    assert f"{failed:,} keys are left failing" in payload["message"]
    # The Verification Summary the night stored after its syncs alerts as a run of the
    # summary does, against the summary stored before.
    summary = wait_for_event(VERIFICATION_ALERT, district.run_id)["payload"]
    assert summary["previous_accuracy"] == enrollment["accuracy"]
    assert summary["errors"] < enrollment["errors"] and summary["change_points"] > 0
