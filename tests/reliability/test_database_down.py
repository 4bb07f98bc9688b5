"""The state database goes down in the middle of a fan-out, for longer than the retries.

PostgreSQL state: the last keys of the request are held up by row locks taken by another
session, so the fan-out is surely under way with those keys in flight; then the database
is made to refuse every connection (``ALLOW_CONNECTIONS false``) and its backends are
terminated, and it stays down until the run has ended (the retries, the key's and the
after-sync verification's, are spent). Then it comes back and the same request runs again.
"""

from __future__ import annotations

import pytest
import tally

from flows.history_store import get_entry
from selective_sync.models import Outcome

from .faults import RowLocks, bring_up, take_down
from .support import (
    ADMIN,
    Background,
    demo_databases,
    district_keys,
    edit_at_district,
    judge_keys,
    ledger_disagreements,
    refused_keys,
    run_flow,
    running,
    state_rows,
    verify,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

OBJECT = "PersonIdentity"
KEYS = 24
HELD = 8  # = SELECTIVE_SYNC_MAX_WORKERS: the held keys fill every slot of the fan-out


def test_state_down_longer_than_retries(tmp_path, monkeypatch, other_districts, module_stack):
    dbs = module_stack.enter_context(demo_databases("postgresql", tmp_path / "data"))
    dbs.configure(monkeypatch, max_workers=str(HELD))
    dbs.bootstrap_admin()
    other_districts.watch(dbs.state_url)

    refused = refused_keys(dbs.manifest, OBJECT)
    keys = [k for k in district_keys(dbs, OBJECT) if k not in refused][:KEYS]
    edit_at_district(dbs, keys, "down-")  # every key has rows to write
    held = keys[-HELD:]
    before = state_rows(dbs, OBJECT, keys)
    # Another session holds the state rows of the last keys: their syncs wait, in flight.
    run = Background(lambda: run_flow(OBJECT, keys), "selective-sync")

    def let_go() -> None:  # also after a failure: the run must be able to end
        locks.release()
        bring_up(dbs.state_url)

    with RowLocks(dbs, held) as locks, running(run, first=let_go):
        wait_until(lambda: locks.waiting() >= HELD, 60, f"{HELD} syncs waiting on the locks")
        # The syncs first: were the lock holder terminated first, a waiting sync could take
        # the lock and commit before its own termination arrived.
        terminated = take_down(dbs.state_url, spare=locks.pid)
        tally.add("faults_tried")
        locks.release()
        try:
            state = run.outcome(timeout=120)
        finally:
            bring_up(dbs.state_url)
    assert terminated >= HELD

    # The run says it could not be processed, and why.
    assert state.is_failed(), state
    assert "could not" in state.message and "database" in state.message, state.message

    # Its Sync History entry still holds every key's outcome.
    entry = get_entry(str(state.state_details.flow_run_id), user=ADMIN)
    assert entry.status == "Failed"
    assert entry.failure and "database" in entry.failure
    got = {k.key: k for k in entry.outcomes}
    assert list(got) == keys
    failed = {k for k, o in got.items() if o.outcome is Outcome.FAILED}
    assert set(held) <= failed, sorted(set(held) - failed)
    for key in failed:
        reason = got[key].reason
        assert reason.startswith("database fault after 4 attempts"), reason
        assert "not currently accepting connections" in reason or "terminat" in reason, reason
    assert {o.outcome for k, o in got.items() if k not in failed} == {Outcome.SYNCED}
    assert (entry.records_succeeded, entry.records_total) == (KEYS - len(failed), KEYS)

    # Nothing half-written: the synced keys fully, the failed ones untouched.
    verdict = judge_keys(dbs, OBJECT, before, keys)
    assert not verdict.lost, sorted(verdict.lost)
    assert verdict.untouched == failed
    assert verdict.synced == set(keys) - failed
    run_id = str(state.state_details.flow_run_id)
    assert not ledger_disagreements(dbs, OBJECT, run_id, before, keys)

    # Back up: the same request completes and verifies clean.
    again = run_flow(OBJECT, keys)
    assert again.is_completed(), again
    result = again.result()
    outcomes = {k.key: k.outcome for k in result.keys}
    assert {outcomes[k] for k in failed} == {Outcome.SYNCED}
    assert {outcomes[k] for k in set(keys) - failed} <= {Outcome.UNCHANGED}
    assert verify(dbs, OBJECT, keys).errors == 0
    assert judge_keys(dbs, OBJECT, before, keys).synced == set(keys)
    tally.add("runs_survived")
