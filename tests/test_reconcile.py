"""Scheduled reconciliation: the plan (plain logic) and the flow on a real Prefect API."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from helpers import whole_database_checksum

from selective_sync.errors import BadInput
from selective_sync.models import KeyOutcome, ObjectVerification, Outcome, SyncResult
from selective_sync.reconcile import (
    REQUESTER,
    DistrictReconciliation,
    ObjectReconciliation,
    check_max_keys,
    objects_in_order,
    plan_object,
)

NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)


def verification(missing=(), mismatched=(), gone=()) -> ObjectVerification:
    return ObjectVerification(
        object="Enrollment",
        district_number=275,
        verified_at=NOW,
        at_district=100,
        at_state=100,
        missing_at_state=list(missing),
        missing_at_district=list(gone),
        mismatched=list(mismatched),
    )


def test_plan_sends_missing_then_mismatched_capped_and_counts_the_rest():
    plan = plan_object(verification(missing=[9, 3, 5], mismatched=[2, 7], gone=[11, 12]), 4)
    assert plan.keys == [3, 5, 9, 2]
    assert (plan.missing_at_state, plan.mismatched, plan.missing_at_district) == (3, 2, 2)
    assert (plan.differing, plan.leftover) == (5, 1)


def test_plan_never_sends_keys_missing_at_district_and_deduplicates():
    plan = plan_object(verification(missing=[1, 1], mismatched=[1, 2], gone=[3]), 1000)
    assert plan.keys == [1, 2] and plan.leftover == 0


def test_plan_of_a_clean_object_is_empty():
    plan = plan_object(verification(gone=[4]), 10)
    assert plan.keys == [] and plan.leftover == 0 and plan.missing_at_district == 1


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "10"])
def test_max_keys_must_be_a_positive_whole_number(bad):
    with pytest.raises(BadInput, match="max_keys"):
        check_max_keys(bad)


def test_objects_go_parents_first():
    assert objects_in_order(None) == ["PersonIdentity", "Enrollment", "Graduation"]
    assert objects_in_order(["Graduation", "personidentity", "Graduation"]) == [
        "PersonIdentity",
        "Graduation",
    ]
    with pytest.raises(BadInput, match="Bogus"):
        objects_in_order(["Bogus"])


def test_record_counts_outcomes_and_leftovers():
    entry = ObjectReconciliation(plan_object(verification(missing=[1, 2, 3]), 2), (100, 3))
    result = SyncResult(
        object="Enrollment",
        district_number=275,
        district_name="MAPLE VALLEY",
        requested_by=REQUESTER,
        requested_at=NOW,
        completed_at=NOW,
        check_dependencies=True,
        dry_run=False,
        keys=[KeyOutcome(1, Outcome.SYNCED), KeyOutcome(2, Outcome.FAILED, "no mapping")],
    )
    entry.record(result, "run-1")
    assert (entry.sent, entry.succeeded, entry.failed, entry.leftover) == (2, 1, 1, 1)
    line = DistrictReconciliation(275, "MAPLE", [entry]).summary("run-2")
    assert (line.sent, line.succeeded, line.failed, line.leftover) == (2, 1, 1, 1)


# ---------------------------------------------------------------- the flow


@pytest.mark.usefixtures("prefect_api")
def test_reconcile_without_the_w_right_fails_clearly_and_writes_nothing(demo, admin):
    from flows.reconcile import reconcile
    from selective_sync.rights import RightsError

    checksum = whole_database_checksum(demo.state_url)
    with pytest.raises(RightsError) as refused:
        reconcile(max_keys=5)
    message = str(refused.value)
    assert "scheduled reconciliation" in message
    assert "selective-sync rights grant 'scheduled reconciliation' W" in message
    assert whole_database_checksum(demo.state_url) == checksum


@pytest.mark.usefixtures("prefect_api")
def test_reconcile_syncs_at_most_max_keys_and_reports_the_rest(demo, admin):
    from flows.reconcile import reconcile_district
    from selective_sync.registry import get_object
    from selective_sync.rights import ALL_DISTRICTS, RightsStore
    from selective_sync.settings import get_settings
    from selective_sync.verification.engine import verify_object
    from tasks.engines import engine_for

    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    kinds = demo.manifest["Enrollment"]
    differing = len(set(kinds["missing_at_state"]) | set(kinds["mismatched"]))
    district = reconcile_district(district=275, objects=["Enrollment"], max_keys=3)
    (entry,) = district.objects
    assert entry.plan.keys == sorted(kinds["missing_at_state"])[:3]
    assert entry.leftover == differing - 3 and district.leftover == differing - 3
    assert entry.sync_run_id and entry.sent == 3
    # Check dependencies is on: a missing parent is synced first. Only a key the state
    # refuses (an unmapped code, its own or its parent's) can still fail.
    refusable = demo.manifest["will_fail"]["Enrollment"]
    refusable = set(refusable["unmapped_code"]) | set(refusable["parent_missing"])
    assert entry.succeeded + entry.failed == 3 and entry.succeeded >= 1
    assert entry.failed <= len(refusable & set(entry.plan.keys)), entry
    settings = get_settings()
    after = verify_object(
        engine_for(settings.resolved_district_url),
        engine_for(settings.resolved_state_url),
        get_object("Enrollment"),
        275,
        entry.plan.keys,
    )
    assert after.errors == entry.failed, after.issues
    # The stored Verification Summary is the one taken after the syncs: the keys that
    # synced are gone from it, and the run's table carries the accuracy after.
    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database
    load_latest_summary = summaries.load_latest_summary
    stored = {o.object: o for o in load_latest_summary(275).objects}["Enrollment"]
    stored_errors = set(stored.missing_at_state) | set(stored.mismatched)
    assert stored_errors.isdisjoint(set(entry.plan.keys) - refusable)
    assert len(stored_errors) == differing - entry.succeeded
    assert entry.accuracy_after == pytest.approx(stored.accuracy)
    assert entry.accuracy_after > entry.accuracy_before
    # The nightly's sync batched its keys (SELECTIVE_SYNC_RECONCILE_PER_KEY_TASK_LIMIT, 0):
    # its writes ran as batch task runs, not one task run per key.
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[entry.sync_run_id]))
        )
    writes = [t.name for t in tasks if t.name.startswith("sync-")]
    assert writes and all("-batch-" in name for name in writes), writes


@pytest.mark.usefixtures("prefect_api")
def test_the_nightly_goes_on_past_a_broken_district_and_reports_each(
    demo, admin, tmp_path, monkeypatch
):
    """Without a server the districts run in-process one after another; a district whose
    database is gone is reported (its error, a link to its run) and the others finish."""
    import json as _json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.reconcile import ARTIFACT_KEY, district_key, reconcile
    from selective_sync.errors import ReconcileIncomplete
    from selective_sync.rights import ALL_DISTRICTS, RightsStore

    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    broken = {"number": 901, "name": "BROKEN", "url": f"sqlite:///{tmp_path / 'gone.db'}"}
    monkeypatch.setenv("SELECTIVE_SYNC_DISTRICTS", _json.dumps([broken]))
    state = reconcile(objects=["PersonIdentity"], max_keys=5, return_state=True)
    assert state.is_failed()
    with pytest.raises(ReconcileIncomplete, match="district 901"):
        state.result()
    with get_client(sync_client=True) as client:
        (summary,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])),
            limit=1,
            sort="CREATED_DESC",
        )
        (good,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[district_key(275)])),
            limit=1,
            sort="CREATED_DESC",
        )
    text = summary.data
    lines = [line for line in text.splitlines() if line.startswith("| 9") or line.startswith("| 2")]
    # The failed district first, with its error and its run; then the reconciled one.
    assert lines[0].startswith("| 901 BROKEN") and "failed: run" in lines[0], text
    assert "does not exist" in lines[0]
    assert lines[1].startswith("| 275 MAPLE VALLEY"), text
    assert "/runs/flow-run/" in lines[1]
    rows = _json.loads(good.data)
    (row,) = rows
    assert row["object"] == "PersonIdentity" and row["sent"] == 5 and not row["error"]
    assert "districts not reconciled: **1**" in text


@pytest.fixture
def unserved_deployment(monkeypatch):
    """A ``reconcile-district`` deployment on the API that no worker or runner serves."""
    from prefect.client.orchestration import get_client

    from flows.reconcile import reconcile_district

    name = "reconcile-district/nobody-serves-this"
    monkeypatch.setenv("SELECTIVE_SYNC_RECONCILE_DISTRICT_DEPLOYMENT", name)
    deployment_id = reconcile_district.to_deployment(name=name.split("/")[1]).apply()
    yield deployment_id
    with get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)


@pytest.mark.usefixtures("prefect_api")
def test_a_deployment_nobody_serves_neither_holds_nor_loses_the_night(
    demo, admin, unserved_deployment, monkeypatch
):
    """Never polled (NOT_READY): the night runs in-process. Polled once, then its worker
    gone: the district's run is cancelled after the start timeout and reported."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from flows.reconcile import reconcile
    from selective_sync.errors import ReconcileIncomplete
    from selective_sync.rights import ALL_DISTRICTS, RightsStore

    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    state = reconcile(districts=[275], objects=["PersonIdentity"], max_keys=2, return_state=True)
    assert state.is_completed(), state.message
    night = state.result()
    assert night.mode == "in-process"
    assert [d.number for d in night.districts] == [275] and not night.errors

    with get_client(sync_client=True) as client:
        # What a worker's poll does: the server marks the deployment READY (in the
        # background, so wait for it).
        client.get_scheduled_flow_runs_for_deployments([unserved_deployment])
        deadline = time.monotonic() + 60
        while client.read_deployment(unserved_deployment).status.value != "READY":
            assert time.monotonic() < deadline, "the poll never marked the deployment READY"
            time.sleep(0.2)
    monkeypatch.setenv("SELECTIVE_SYNC_RECONCILE_START_TIMEOUT_S", "3")
    state = reconcile(districts=[275], objects=["PersonIdentity"], max_keys=2, return_state=True)
    assert state.is_failed()
    with pytest.raises(ReconcileIncomplete, match="not started within 3 s"):
        state.result()
    with get_client(sync_client=True) as client:
        (child,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(
                    any_=[state.state_details.flow_run_id]
                )
            )
        )
    assert child.deployment_id == unserved_deployment
    assert child.state.type.value == "CANCELLED" and child.run_count == 0


def test_a_districts_table_reads_back_as_its_state_wide_line():
    """The child run's table (district_table) is what the parent reads (summary_from_table)."""
    from selective_sync.reconcile import (
        StateReconciliation,
        district_table,
        state_markdown,
        summary_from_table,
    )

    entry = ObjectReconciliation(
        plan_object(verification(missing=[1, 2, 3], mismatched=[4]), 3),
        counts_before=(100, 4),
        counts_after=(100, 2),
        synced=2,
        failed=1,
        sync_run_id="run-9",
    )
    clean = ObjectReconciliation(plan_object(verification(), 3), counts_before=(50, 0))
    district = DistrictReconciliation(275, "MAPLE | VALLEY", [entry, clean])
    line = summary_from_table(district_table(district), "child-1", 12.5)
    assert line == district.summary("child-1", 12.5)
    assert (line.sent, line.succeeded, line.failed, line.leftover) == (3, 2, 1, 1)
    # Before: 4 errors in 150 keys; after: the clean object's figures carried over.
    assert (line.accuracy_before, line.accuracy_after) == ("97.33%", "98.66%")
    broken = summary_from_table(
        district_table(DistrictReconciliation(276, "OAK", error="verification failed: gone"))
    )
    assert broken.error == "verification failed: gone" and broken.counts_before is None
    with pytest.raises(ValueError):
        summary_from_table([{"format": 99}])

    state = StateReconciliation(NOW, 1000, "work pool", [line, broken], completed_at=NOW)
    text = state_markdown(state, lambda run: f"/runs/flow-run/{run}")
    rows = [r for r in text.splitlines() if r.startswith("| 27")]
    assert rows[0].startswith("| 276 OAK") and "verification failed: gone" in rows[0]
    assert rows[1].startswith("| 275 MAPLE \\| VALLEY | 97.33% | 98.66% | 3 | 2 | 1 | 1 |")
    assert "[run](/runs/flow-run/child-1)" in rows[1]
    assert state.errors == ["district 276: verification failed: gone"]
