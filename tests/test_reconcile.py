"""Scheduled reconciliation: the plan (plain logic) and the flow on a real Prefect API."""

from __future__ import annotations

import logging
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
    from flows.reconcile import reconcile_districts
    from selective_sync.registry import get_object
    from selective_sync.rights import ALL_DISTRICTS, RightsStore
    from selective_sync.settings import get_settings
    from selective_sync.verification.engine import verify_object
    from selective_sync.verification.store import DatabaseSummaryStore
    from tasks.engines import engine_for

    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    kinds = demo.manifest["Enrollment"]
    differing = len(set(kinds["missing_at_state"]) | set(kinds["mismatched"]))
    (district,) = reconcile_districts(districts=[275], objects=["Enrollment"], max_keys=3)
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
    # The stored Verification Summary is the one after the syncs: the keys that synced
    # are gone from it, and the district's table carries the accuracy after.
    stored = {o.object: o for o in DatabaseSummaryStore().load_latest_summary(275).objects}
    stored = stored["Enrollment"]
    stored_errors = set(stored.missing_at_state) | set(stored.mismatched)
    assert stored_errors.isdisjoint(set(entry.plan.keys) - refusable)
    assert len(stored_errors) == differing - entry.succeeded
    assert entry.accuracy_after == pytest.approx(stored.accuracy)
    assert entry.accuracy_after > entry.accuracy_before


class Verifications(logging.Handler):
    """The verification engine's lines while it is attached: (object, scope) of each."""

    LOGGER = "selective_sync.verification.engine"

    def __init__(self):
        super().__init__(logging.INFO)
        self.made: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("verified "):
            self.made.append((record.args[0], record.args[2]))

    def __enter__(self) -> Verifications:
        logger = logging.getLogger(self.LOGGER)
        self.level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logger = logging.getLogger(self.LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self.level)


def night_of(demo, admin, objects, max_keys):
    """One district reconciled by the batch flow, with the verifications it made."""
    from flows.reconcile import reconcile_districts
    from selective_sync.rights import ALL_DISTRICTS, RightsStore

    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    with Verifications() as verifications:
        (district,) = reconcile_districts(districts=[275], objects=objects, max_keys=max_keys)
    return district, verifications.made


@pytest.mark.usefixtures("prefect_api")
def test_the_night_verifies_each_object_once_and_its_synced_keys_once(demo, admin):
    """Each object verified whole once; each sync's keys once after it (no verification
    before the sync, no Verification Summary run after); the stored summary after the
    syncs equals verifying every object again."""
    from selective_sync.registry import get_object
    from selective_sync.settings import get_settings
    from selective_sync.verification.engine import verify_object
    from selective_sync.verification.store import DatabaseSummaryStore
    from tasks.engines import engine_for

    names = ["PersonIdentity", "Enrollment", "Graduation"]
    district, verified = night_of(demo, admin, names, max_keys=1000)
    synced = {o.object: o for o in district.objects if o.sent}
    assert set(synced) == set(names)  # the demo has drift in every object
    whole = [name for name, scope in verified if scope == "every key"]
    assert sorted(whole) == sorted(names), verified
    parts = [(name, scope) for name, scope in verified if scope != "every key"]
    # One after-check per sync, of its own keys (parents written by a child's sync, were
    # there any, would be one more check of the parent's written keys).
    assert sorted(parts) == sorted((n, f"{o.sent} keys asked") for n, o in synced.items())

    settings = get_settings()
    district_engine = engine_for(settings.resolved_district_url)
    state_engine = engine_for(settings.resolved_state_url)
    stored = DatabaseSummaryStore().load_latest_summary(275)
    for mine in stored.objects:
        fresh = verify_object(district_engine, state_engine, get_object(mine.object), 275)
        assert (mine.at_district, mine.at_state) == (fresh.at_district, fresh.at_state)
        assert mine.missing_at_state == fresh.missing_at_state
        assert mine.missing_at_district == fresh.missing_at_district
        assert mine.mismatched == fresh.mismatched
        assert {(i.key, i.issue) for i in mine.issues} == {(i.key, i.issue) for i in fresh.issues}
        assert synced[mine.object].counts_after == (fresh.distinct, fresh.errors)


@pytest.mark.usefixtures("prefect_api")
def test_each_nightly_sync_is_a_history_entry_with_its_ledger_rows_and_a_report(
    demo, admin, tmp_path
):
    """No flow run per sync: each is a ledger request of origin "nightly" with every key's
    row, listed and shown by the history, marked in the View History table, and its report
    is made when someone asks for it (none before)."""
    import os
    import subprocess
    import sys

    import prefect.settings
    from pypdf import PdfReader

    from flows.history_store import get_entry, list_entries
    from selective_sync.history.ledger import ledger_history
    from selective_sync.ledger import NIGHTLY_ORIGIN, read_keys, read_request
    from selective_sync.settings import get_settings

    district, _ = night_of(demo, admin, ["PersonIdentity", "Enrollment"], max_keys=4)
    runs = {o.object: o.sync_run_id for o in district.objects}
    assert all(runs.values()), runs
    listed = {e.run_id: e for e in list_entries(275, user=admin)}
    reports = demo.dir / "reports" / "sync"
    for entry in district.objects:
        run = entry.sync_run_id
        shown = get_entry(run, user=admin)
        assert listed[run].requested_by == REQUESTER and listed[run].status == "Complete"
        assert listed[run].records == f"{entry.succeeded}/{entry.sent}"
        assert shown.keys == entry.plan.keys and shown.check_dependencies
        with ledger_history(get_settings()) as history:
            request = read_request(history.engine, run)
            rows = {
                r.key: r.outcome for r in read_keys(history.engine, run) if r.object == entry.object
            }
        assert request.origin == NIGHTLY_ORIGIN and not request.has_flow_run
        assert rows == {o.key: o.outcome.value for o in shown.outcomes}
        assert set(rows) == set(entry.plan.keys)
        assert not list(reports.glob(f"{run}.*"))  # nothing rendered on the night's path

    # The View History table, rewritten once after the district, shows them (no run page).
    from prefect.artifacts import Artifact

    table = Artifact.get("sync-history-275").data
    for entry in district.objects:
        name = listed[entry.sync_run_id].run_name
        (row,) = [line for line in table.splitlines() if f"| {name} (nightly) |" in line]
        assert f"| {entry.succeeded}/{entry.sent} |" in row

    # The report, on request, from the ledger.
    env = dict(os.environ, PREFECT_API_URL=prefect.settings.PREFECT_API_URL.value())
    run = runs["Enrollment"]
    pdf = tmp_path / "nightly.pdf"
    built = subprocess.run(
        [sys.executable, "-m", "flows.cli", "report", run[:8], "-o", str(pdf), "--user", admin],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    text = " ".join("".join(page.extract_text() for page in PdfReader(pdf).pages).split())
    assert REQUESTER in text and str(district.objects[1].plan.keys[0]) in text


@pytest.mark.usefixtures("prefect_api")
def test_the_nightly_goes_on_past_a_broken_district_and_reports_each(
    demo, admin, tmp_path, monkeypatch
):
    """Without a server the districts are task runs of the nightly, one after another; a
    district whose database is gone is reported (its error, a link to its task run) and the
    others finish."""
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
    assert "/runs/task-run/" in lines[0] and "/runs/task-run/" in lines[1]
    rows = _json.loads(good.data)
    (row,) = rows
    assert row["object"] == "PersonIdentity" and row["sent"] == 5 and not row["error"]
    assert "districts not reconciled: **1**" in text


@pytest.fixture
def unserved_deployment(monkeypatch):
    """A ``reconcile-districts`` deployment on the API that no worker or runner serves."""
    from prefect.client.orchestration import get_client

    from flows.reconcile import reconcile_districts

    name = "reconcile-districts/nobody-serves-this"
    monkeypatch.setenv("SELECTIVE_SYNC_RECONCILE_BATCH_DEPLOYMENT", name)
    deployment_id = reconcile_districts.to_deployment(name=name.split("/")[1]).apply()
    yield deployment_id
    with get_client(sync_client=True) as client:
        client.delete_deployment(deployment_id)


@pytest.mark.usefixtures("prefect_api")
def test_a_deployment_nobody_serves_neither_holds_nor_loses_the_night(
    demo, admin, unserved_deployment, monkeypatch
):
    """Never polled (NOT_READY): the night runs in-process. Polled once, then its worker
    gone: the districts' run is cancelled after the start timeout and each reported."""
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
    """The district's table (district_table) is what the parent reads (summary_from_table)."""
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
    text = state_markdown(state, lambda path: f"/runs/{path}")
    rows = [r for r in text.splitlines() if r.startswith("| 27")]
    assert rows[0].startswith("| 276 OAK") and "verification failed: gone" in rows[0]
    assert rows[1].startswith("| 275 MAPLE \\| VALLEY | 97.33% | 98.66% | 3 | 2 | 1 | 1 |")
    assert "[run](/runs/task-run/child-1)" in rows[1]
    assert state.errors == ["district 276: verification failed: gone"]


def test_districts_go_to_the_work_pool_in_batches():
    """About RUNS_PER_SLOT runs per slot (few process starts, an even end of the night),
    at least MIN_PER_RUN districts a run while every slot gets one, or the batch size
    asked for; every district once, in order."""
    from selective_sync.reconcile import MIN_PER_RUN, RUNS_PER_SLOT, district_batches

    numbers = list(range(1001, 1101))
    batches = district_batches(numbers, 2)
    assert [n for b in batches for n in b] == numbers
    assert len(batches) == 2 * RUNS_PER_SLOT == 6 and {len(b) for b in batches} == {17, 15}
    assert [len(b) for b in district_batches(numbers[:30], 2)] == [MIN_PER_RUN] * 3
    assert [len(b) for b in district_batches(numbers[:10], 1)] == [10]
    assert district_batches(numbers[:4], 2) == [[1001, 1002], [1003, 1004]]
    assert district_batches(numbers[:5], 2, per_run=2) == [[1001, 1002], [1003, 1004], [1005]]
    assert district_batches([], 2) == []
    with pytest.raises(BadInput, match="districts per run"):
        district_batches(numbers, 2, per_run=-1)
