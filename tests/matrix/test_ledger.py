"""The sync ledger on every vendor: each key's outcome row commits with the key's rows."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from selective_sync.db import make_engine
from selective_sync.demo import generate_demo
from selective_sync.ledger import (
    KeyRecorder,
    finish_request,
    open_request,
    read_keys,
    read_request,
    read_requests,
)
from selective_sync.models import Outcome, RequestStatus
from selective_sync.sync import RetryPolicy, sync_keys

from .conftest import database

KINDS = ["sqlite", "postgresql", "mariadb"]
NOWHERE = 99_999_999


@pytest.fixture(params=KINDS)
def demo(request, tmp_path):
    """A 300-person demo whose state database is of the parameter's kind."""
    with ExitStack() as stack:
        state_url = stack.enter_context(database(request.param, tmp_path, "state"))
        manifest = generate_demo(tmp_path, persons=300, seed=11, state_url=state_url)
        district = stack.enter_context(_engine(f"sqlite:///{tmp_path / 'district.db'}"))
        state = stack.enter_context(_engine(state_url))
        yield district, state, manifest


class _engine:
    def __init__(self, url):
        self.engine = make_engine(url)

    def __enter__(self):
        return self.engine

    def __exit__(self, *exc):
        self.engine.dispose()


def state_rows(state, district: int) -> list:
    """Every row of the district's person and identity tables at the state."""
    rows = []
    with state.connect() as conn:
        for name in ("state_person", "state_identity"):
            # Raw values: what is stored, not what a column type makes of it.
            found = conn.execute(
                text(f"SELECT * FROM {name} WHERE district_number = :d"), {"d": district}
            )
            rows += sorted((name, *map(str, row)) for row in found)
    return rows


def test_every_outcome_is_recorded_and_only_written_keys_say_written(demo):
    district, state, manifest = demo
    number = manifest.district_number
    differing = manifest.keys("Enrollment", "missing_at_state") + manifest.keys(
        "Enrollment", "mismatched"
    )
    refused = manifest.failing("Enrollment", "unmapped_code")
    keys = sorted(set(differing[:20] + refused[:3])) + [NOWHERE]
    run_id = "ledger-test-run-0001"
    open_request(
        state,
        run_id=run_id,
        run_name="Enrollment x24 by test-admin",
        district=number,
        object_name="Enrollment",
        requested_by="test-admin",
        requested_at=datetime.now(UTC),
        check_dependencies=True,
        dry_run=False,
        keys=keys,
    )
    recorder = KeyRecorder(run_id)
    outcomes = sync_keys(
        district, state, "Enrollment", number, keys, check_dependencies=True, recorder=recorder
    )
    assert not recorder.pending
    recorded = {(r.object, r.key): r for r in read_keys(state, run_id)}
    by_key = {o.key: o for o in outcomes}
    for key, outcome in by_key.items():
        row = recorded[("Enrollment", key)]
        assert row.outcome == outcome.outcome.value
        assert row.reason == outcome.reason and row.attempts == outcome.attempts
        assert row.parents_synced == outcome.parents_synced
        # Written at: exactly the keys whose rows this request wrote.
        assert (row.written_at is not None) == (outcome.outcome is Outcome.SYNCED), row
    assert by_key[NOWHERE].outcome is Outcome.NOT_FOUND
    assert {by_key[k].outcome for k in refused[:3]} == {Outcome.FAILED}
    assert any(o.outcome is Outcome.SYNCED for o in outcomes)
    # Parents synced first have rows of their own, marked written.
    parents = {label for o in outcomes for label in o.parents_synced}
    for label in parents:
        name, key = label.split()
        assert recorded[(name, int(key))].written_at is not None, label
    assert {k for name, k in recorded if name == "Enrollment"} == set(keys)
    # Parents looked at and found equal are recorded too, as not written.
    written_parents = {
        f"{name} {k}"
        for (name, k), row in recorded.items()
        if name != "Enrollment" and row.written_at is not None
    }
    assert written_parents == parents

    # The request's end: status, figures, and a changed outcome (after verification).
    first = outcomes[0]
    first.reason = "still differs after the sync"
    first.outcome = Outcome.FAILED
    finish_request(
        state,
        run_id,
        RequestStatus.COMPLETE,
        completed_at=datetime.now(UTC),
        outcomes=[("Enrollment", o) for o in outcomes],
    )
    request = read_request(state, run_id)
    assert request.status is RequestStatus.COMPLETE and request.completed_at is not None
    assert request.succeeded == sum(o.outcome.succeeded for o in outcomes)
    assert request.key_count == len(keys) and request.check_dependencies
    assert [r.run_id for r in read_requests(state, number)] == [run_id]
    again = {(r.object, r.key): r for r in read_keys(state, run_id)}
    assert again[("Enrollment", first.key)].reason == "still differs after the sync"


def test_a_key_whose_ledger_row_cannot_be_written_writes_no_rows(demo):
    """Same transaction: with the ledger's key table gone, a differing key's rows are
    rolled back with the failed ledger insert; nothing of the key reaches the state."""
    district, state, manifest = demo
    number = manifest.district_number
    refused = {k for keys in manifest.will_fail["PersonIdentity"].values() for k in keys}
    key = next(k for k in manifest.keys("PersonIdentity", "mismatched") if k not in refused)
    before = state_rows(state, number)
    rename = (
        "RENAME TABLE {a} TO {b}"
        if state.dialect.name in ("mysql", "mariadb")
        else "ALTER TABLE {a} RENAME TO {b}"
    )
    with state.begin() as conn:
        conn.execute(text(rename.format(a="sync_key_outcome", b="sync_key_outcome_away")))
    try:
        (outcome,) = sync_keys(
            district,
            state,
            "PersonIdentity",
            number,
            [key],
            recorder=KeyRecorder("ledger-test-run-0002"),
            retry=RetryPolicy(attempts=2, backoff_s=0.01),
        )
    finally:
        with state.begin() as conn:
            conn.execute(text(rename.format(a="sync_key_outcome_away", b="sync_key_outcome")))
    assert outcome.outcome is Outcome.FAILED, outcome
    assert state_rows(state, number) == before
    # Without the fault the same key syncs and is recorded as written.
    recorder = KeyRecorder("ledger-test-run-0003")
    (outcome,) = sync_keys(district, state, "PersonIdentity", number, [key], recorder=recorder)
    assert outcome.outcome is Outcome.SYNCED
    assert state_rows(state, number) != before
    (row,) = read_keys(state, "ledger-test-run-0003")
    assert row.key == key and row.written_at is not None


def test_a_request_whose_heartbeat_stops_reads_crashed(demo):
    """A live request beats (Heartbeat); one silent for three beats reads Crashed, naming
    its host and process, without any Prefect API."""
    import time

    from sqlalchemy import update

    from selective_sync.history.ledger import LedgerHistory
    from selective_sync.ledger import Heartbeat
    from selective_sync.schema import sync_request

    _, state, manifest = demo
    run_id = "ledger-test-run-0004"
    open_request(
        state,
        run_id=run_id,
        run_name="PersonIdentity x2 by test-admin",
        district=manifest.district_number,
        object_name="PersonIdentity",
        requested_by="test-admin",
        requested_at=datetime.now(UTC),
        check_dependencies=False,
        dry_run=False,
        keys=[1, 2],
    )
    history = LedgerHistory(state, {manifest.district_number: "MAPLE VALLEY"}, heartbeat_s=1.0)
    with state.begin() as conn:  # silent for a minute
        conn.execute(
            update(sync_request)
            .where(sync_request.c.run_id == run_id)
            .values(heartbeat_at=datetime(2026, 1, 1))
        )
    (entry,) = history.entries(manifest.district_number, limit=5)
    assert entry.status == "Crashed" and "stopped" in entry.failure and "process" in entry.failure
    with Heartbeat(state, run_id, interval_s=0.2):
        time.sleep(1.5)  # MariaDB's DATETIME keeps whole seconds
        (entry,) = history.entries(manifest.district_number, limit=5)
    assert entry.status == "In Progress" and entry.failure is None
    assert entry.progress == 0.0 and entry.records == "-/2"
