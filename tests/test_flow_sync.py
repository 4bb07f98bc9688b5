"""The Selective Sync flow end to end: real SQLite databases and a real Prefect API."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from helpers import rows_checksum, whole_database_checksum

from selective_sync.errors import BadInput
from selective_sync.models import Outcome, RequestStatus

OTHER_DISTRICT = 312

pytestmark = pytest.mark.usefixtures("prefect_api")


def run_sync(object_name, ids, user, **kwargs):
    from flows.sync_request import selective_sync

    return selective_sync(object=object_name, ids=ids, requested_by=user, **kwargs)


def verify_keys(object_name, keys):
    from selective_sync.db import make_engine
    from selective_sync.registry import get_object
    from selective_sync.settings import get_settings
    from selective_sync.verification.engine import verify_object

    settings = get_settings()
    district, state = (
        make_engine(settings.resolved_district_url),
        make_engine(settings.resolved_state_url),
    )
    try:
        return verify_object(district, state, get_object(object_name), 275, keys)
    finally:
        district.dispose()
        state.dispose()


def ledger_requests(demo):
    from selective_sync.db import make_engine
    from selective_sync.ledger import read_requests

    engine = make_engine(demo.state_url)
    try:
        return read_requests(engine, 275)
    finally:
        engine.dispose()


def ledger_keys(demo, run_id):
    from selective_sync.db import make_engine
    from selective_sync.ledger import read_keys

    engine = make_engine(demo.state_url)
    try:
        return [r for r in read_keys(engine, run_id) if r.object == read_object(demo, run_id)]
    finally:
        engine.dispose()


def read_object(demo, run_id):
    return next(r.object for r in ledger_requests(demo) if r.run_id == run_id)


def outcomes_by_key(result):
    return {k.key: k for k in result.keys}


def test_every_manifest_kind_is_clean_after_sync(demo, admin):
    other_before = rows_checksum(demo.state_url, OTHER_DISTRICT)
    for name in ("PersonIdentity", "Enrollment", "Graduation"):
        kinds = demo.manifest[name]
        will_fail = demo.manifest["will_fail"].get(name, {})
        refused = set(will_fail.get("parent_missing", [])) | set(will_fail.get("unmapped_code", []))
        fixable = [k for k in kinds["missing_at_state"] + kinds["mismatched"] if k not in refused]
        result = run_sync(name, fixable, admin)
        assert {k.key for k in result.keys} == set(fixable)
        assert all(k.outcome is Outcome.SYNCED for k in result.keys), result.keys
        after = verify_keys(name, fixable)
        assert after.errors == 0, after.issues
        # Records only at the state are not found at the district: nothing changes.
        gone = kinds["missing_at_district"]
        checksum = rows_checksum(demo.state_url)
        result = run_sync(name, gone, admin)
        assert all(k.outcome is Outcome.NOT_FOUND for k in result.keys)
        assert rows_checksum(demo.state_url) == checksum
    assert rows_checksum(demo.state_url, OTHER_DISTRICT) == other_before


def test_outcome_kinds_and_check_dependencies(demo, admin):
    manifest = demo.manifest
    mismatched = manifest["PersonIdentity"]["mismatched"][0]
    parent_missing = manifest["will_fail"]["Enrollment"]["parent_missing"][0]
    unmapped = manifest["will_fail"]["Enrollment"]["unmapped_code"][0]
    absent = 999_999_999
    first = run_sync("PersonIdentity", f"{mismatched}, {absent}\n{mismatched}", admin)
    assert [k.key for k in first.keys] == [mismatched, absent]
    got = outcomes_by_key(first)
    assert got[mismatched].outcome is Outcome.SYNCED
    assert got[absent].outcome is Outcome.NOT_FOUND
    assert (first.succeeded, first.total) == (1, 2)

    again = run_sync("PersonIdentity", [mismatched], admin)
    assert again.keys[0].outcome is Outcome.UNCHANGED

    refused = run_sync("Enrollment", [parent_missing, unmapped], admin)
    got = outcomes_by_key(refused)
    assert got[parent_missing].outcome is Outcome.FAILED
    assert "PersonIdentity" in got[parent_missing].reason
    assert "is not at the state" in got[parent_missing].reason
    assert got[unmapped].outcome is Outcome.FAILED
    assert "no state mapping" in got[unmapped].reason

    fixed = run_sync("Enrollment", [parent_missing], admin, check_dependencies=True)
    outcome = fixed.keys[0]
    assert outcome.outcome is Outcome.SYNCED, outcome
    assert outcome.parents_synced and outcome.parents_synced[0].startswith("PersonIdentity ")
    assert verify_keys("Enrollment", [parent_missing]).errors == 0


def test_the_ledger_holds_each_request_and_key_as_the_result_says(demo, admin):
    manifest = demo.manifest
    refused = set(manifest["will_fail"]["Enrollment"]["unmapped_code"])
    keys = manifest["Enrollment"]["mismatched"][:30] + [999_999_999]
    result = run_sync("Enrollment", keys, admin, check_dependencies=True)
    (request,) = ledger_requests(demo)
    assert request.object == "Enrollment" and request.requested_by == admin
    assert request.status is RequestStatus.COMPLETE and request.check_dependencies
    assert (request.succeeded, request.key_count) == (result.succeeded, result.total)
    assert request.completed_at >= request.requested_at
    recorded = {r.key: r for r in ledger_keys(demo, request.run_id)}
    assert set(recorded) == set(keys)
    for outcome in result.keys:
        row = recorded[outcome.key]
        assert (row.outcome, row.reason) == (outcome.outcome.value, outcome.reason)
        assert (row.written_at is not None) == (outcome.outcome is Outcome.SYNCED)
    assert refused & set(keys), "the demo's refused keys are among those asked"
    assert all(recorded[k].outcome == "failed" for k in refused & set(keys))


def test_second_identical_sync_changes_nothing(demo, admin):
    unmapped = set(demo.manifest["will_fail"]["Enrollment"]["unmapped_code"])
    keys = [k for k in demo.manifest["Enrollment"]["mismatched"] if k not in unmapped]
    run_sync("Enrollment", keys, admin)
    checksum = whole_database_checksum(demo.state_url, ledger=False)
    second = run_sync("Enrollment", keys, admin)
    assert {k.outcome for k in second.keys} == {Outcome.UNCHANGED}
    assert whole_database_checksum(demo.state_url, ledger=False) == checksum


def test_dry_run_writes_nothing_and_plans_changes(demo, admin):
    keys = demo.manifest["PersonIdentity"]["mismatched"]
    checksum = whole_database_checksum(demo.state_url, ledger=False)
    result = run_sync("PersonIdentity", keys, admin, dry_run=True)
    assert result.dry_run
    assert whole_database_checksum(demo.state_url, ledger=False) == checksum
    assert all(k.changes for k in result.keys), result.keys
    # The ledger has the dry run, marked, and not one key marked written.
    (request,) = [r for r in ledger_requests(demo) if r.dry_run]
    assert request.key_count == len(keys) and request.status is RequestStatus.COMPLETE
    recorded = ledger_keys(demo, request.run_id)
    assert {r.key for r in recorded} == set(keys)
    assert all(r.written_at is None for r in recorded)


def test_bad_ids_are_refused_with_nothing_written(demo, admin):
    checksum = whole_database_checksum(demo.state_url)
    with pytest.raises(BadInput) as refused:
        run_sync("PersonIdentity", "12, 12a, -5, DROP TABLE", admin)
    message = str(refused.value)
    for token in ("12a", "-5", "DROP", "TABLE"):
        assert token in message
    assert whole_database_checksum(demo.state_url) == checksum


def test_requester_without_w_is_refused(demo, admin):
    from selective_sync.rights import ALL_DISTRICTS, RightsError, RightsStore

    with RightsStore.from_settings() as store:
        store.grant(admin, "reader", "R", district=ALL_DISTRICTS)
    checksum = whole_database_checksum(demo.state_url)
    with pytest.raises(RightsError) as refused:
        run_sync("PersonIdentity", demo.manifest["PersonIdentity"]["mismatched"], "reader")
    assert "reader" in str(refused.value) and "W" in str(refused.value)
    assert whole_database_checksum(demo.state_url) == checksum


def test_batches_above_the_per_key_limit_keep_every_outcome(demo, admin, monkeypatch):
    monkeypatch.setenv("SELECTIVE_SYNC_PER_KEY_TASK_LIMIT", "5")
    kinds = demo.manifest["Enrollment"]
    will_fail = demo.manifest["will_fail"]["Enrollment"]
    keys = kinds["mismatched"] + kinds["missing_at_state"] + kinds["missing_at_district"]
    result = run_sync("Enrollment", keys, admin)
    assert [k.key for k in result.keys] == list(dict.fromkeys(keys))
    got = outcomes_by_key(result)
    for key in kinds["missing_at_district"]:
        assert got[key].outcome is Outcome.NOT_FOUND
    for key in will_fail["parent_missing"] + will_fail["unmapped_code"]:
        assert got[key].outcome is Outcome.FAILED and got[key].reason
    for key in kinds["mismatched"]:
        if key not in will_fail["unmapped_code"]:
            assert got[key].outcome is Outcome.SYNCED


def test_locked_state_is_retried(demo, admin, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    monkeypatch.setenv("SELECTIVE_SYNC_SQLITE_BUSY_TIMEOUT_S", "0.5")
    key = demo.manifest["PersonIdentity"]["mismatched"][0]
    locked = threading.Event()
    task_name = f"sync-PersonIdentity-{key}"

    def first_attempt_failed() -> bool:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[task_name]))
            )
        return any(r.state and r.state.name in ("AwaitingRetry", "Retrying") for r in runs)

    def hold_write_lock():
        # Another writer takes the state's lock once the request is in the ledger (before
        # its key is written: a verification comes first) and holds it until the sync's
        # first attempt has given up.
        conn = sqlite3.connect(demo.dir / "state.db", timeout=10)
        deadline = time.monotonic() + 120
        while not conn.execute("SELECT 1 FROM sync_request").fetchone():
            assert time.monotonic() < deadline, "the request never reached the ledger"
            time.sleep(0.01)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not first_attempt_failed():
            time.sleep(0.2)
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    try:
        result = run_sync("PersonIdentity", [key], admin)
    finally:
        holder.join()
    assert locked.is_set()
    outcome = result.keys[0]
    assert outcome.outcome is Outcome.SYNCED, outcome
    assert outcome.attempts > 1
    assert verify_keys("PersonIdentity", [key]).errors == 0
