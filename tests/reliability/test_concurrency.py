"""Concurrency: runs that write the same keys at the same time (same Prefect API).

On MariaDB (InnoDB: row and gap locks, deadlock detection that kills one transaction)
and PostgreSQL: two selective syncs over overlapping keys, one in the reverse order of the
other, fanned out in batch tasks at the same time; and the nightly reconciliation started
beside a manual selective sync of the same keys (the district's lock runs them one after
the other). Every key involved ends equal to the
district's, no key is left failed by a lock conflict or deadlock (they are retried), and
every run's Sync History entry is right.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import tally

from flows.history_store import get_entry
from selective_sync.models import Outcome
from selective_sync.reconcile import REQUESTER

from .faults import Deadlock, RowLocks
from .support import (
    ADMIN,
    SUCCEEDED,
    Background,
    demo_databases,
    district_keys,
    edit_at_district,
    expected_outcomes,
    judge_keys,
    keys_in_sync,
    refused_keys,
    run_flow,
    running,
    state_rows,
    verify,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

OBJECT = "PersonIdentity"
SERVERS = ["mariadb", "postgresql"]
WRITERS = 8  # SELECTIVE_SYNC_MAX_WORKERS: a run has at most this many writers at once


def assert_entry(run_id, keys: list[int], object_name: str, requested_by: str) -> None:
    """The run's Sync History entry: its keys, object, requester and records."""
    entry = get_entry(str(run_id), user=ADMIN)
    assert entry.status == "Complete", entry
    assert entry.keys == keys
    assert entry.object == object_name and entry.requested_by == requested_by
    succeeded = sum(k.outcome.succeeded for k in entry.outcomes)
    assert (entry.records_succeeded, entry.records_total) == (succeeded, len(keys))


@pytest.mark.parametrize("kind", SERVERS)
def test_two_syncs_over_overlapping_keys(
    kind, tmp_path, monkeypatch, other_districts, module_stack
):
    dbs = module_stack.enter_context(demo_databases(kind, tmp_path / "data"))
    dbs.configure(monkeypatch)
    dbs.bootstrap_admin()
    other_districts.watch(dbs.state_url)

    refused = refused_keys(dbs.manifest, OBJECT)
    fixable = [k for k in district_keys(dbs, OBJECT) if k not in refused][:330]
    edit_at_district(dbs, fixable, "both-")
    first, second = fixable[:280], list(reversed(fixable[50:]))  # 230 keys in common
    keys = fixable
    expected = expected_outcomes(dbs, OBJECT, keys, refused)
    assert set(expected.values()) == {Outcome.SYNCED}
    before = state_rows(dbs, OBJECT, keys)

    # Both runs are held up on the same rows (every fifth key), then let go together: they
    # write the same keys at the same moment, not one after the other.
    runs = [
        Background(lambda ids=ids: run_flow(OBJECT, ids), f"sync-{n}")
        for n, ids in enumerate((first, second))
    ]
    with RowLocks(dbs, fixable[::5]) as locks, running(*runs, first=locks.release):
        # Every in-flight batch of both runs reaches a held key: up to 2 x WRITERS wait.
        wait_until(
            lambda: locks.waiting() > WRITERS or not all(r.is_alive() for r in runs),
            120,
            "both runs waiting on the held rows",
            explain=locks.sessions,
        )
        with contextlib.suppress(AssertionError):  # more of them, if they come soon
            wait_until(lambda: locks.waiting() >= 2 * WRITERS, 3, "every writer waiting")
        waiting = locks.waiting()
        locks.release()
        states = [run.outcome(timeout=180) for run in runs]
    assert waiting > WRITERS, f"only {waiting} syncs waited: the runs did not overlap"
    tally.add("faults_tried")  # two writers on the same rows

    results = []
    for state, ids in zip(states, (first, second), strict=True):
        assert state.is_completed(), state
        result = state.result()
        results.append(result)
        outcomes = {k.key: k for k in result.keys}
        assert list(outcomes) == ids
        failed = {k: o.reason for k, o in outcomes.items() if o.outcome not in SUCCEEDED}
        assert not failed, failed  # a deadlock or lock timeout would show here
        assert_entry(state.state_details.flow_run_id, ids, OBJECT, ADMIN)
    # Somebody wrote every key: a key that needed a change is synced by at least one run.
    by_run = [{k.key: k.outcome for k in r.keys} for r in results]
    not_written = [k for k in keys if Outcome.SYNCED not in {o.get(k) for o in by_run}]
    assert not not_written, not_written

    assert verify(dbs, OBJECT, keys).errors == 0
    verdict = judge_keys(dbs, OBJECT, before, keys)
    assert not verdict.lost and verdict.synced == set(keys)
    tally.add("runs_survived", 2)


def test_reconciliation_beside_a_manual_sync(tmp_path, monkeypatch, other_districts, module_stack):
    """The nightly and a person's sync of the same district and keys, started together: the
    district's lock (selective_sync.locks) makes one wait for the other, so their writes
    never interleave, and both end right."""
    from flows.reconcile import reconcile_districts
    from selective_sync.rights import ALL_DISTRICTS, RightsStore

    dbs = module_stack.enter_context(demo_databases("mariadb", tmp_path / "data"))
    dbs.configure(monkeypatch)
    dbs.bootstrap_admin()
    with RightsStore.from_settings() as store:
        store.grant(ADMIN, REQUESTER, "W", district=ALL_DISTRICTS)
    other_districts.watch(dbs.state_url)

    refused = refused_keys(dbs.manifest, OBJECT)
    manual = [k for k in district_keys(dbs, OBJECT) if k not in refused][:250]
    edit_at_district(dbs, manual, "nightly-")
    seeded = dbs.manifest[OBJECT]
    involved = sorted(set(manual) | set(seeded["missing_at_state"]) | set(seeded["mismatched"]))
    before = state_rows(dbs, OBJECT, involved)

    # Rows held at the state keep whichever run gets the district's lock first writing; the
    # other must wait for the lock, not for the rows.
    nightly = Background(
        lambda: reconcile_districts(
            districts=[275], objects=[OBJECT], max_keys=1000, return_state=True
        ),
        "reconcile",
    )
    by_hand_run = Background(lambda: run_flow(OBJECT, list(reversed(manual))), "manual")
    with RowLocks(dbs, manual[::5]) as locks, running(nightly, by_hand_run, first=locks.release):
        wait_until(
            lambda: locks.waiting() > 0 or not (nightly.is_alive() and by_hand_run.is_alive()),
            120,
            "one run waiting on the held rows",
            explain=locks.sessions,
        )
        # Give the other run time to reach the rows too, were it not kept out by the lock.
        time.sleep(3)
        waiting = locks.waiting()
        locks.release()
        by_hand = by_hand_run.outcome(timeout=240)
        night = nightly.outcome(timeout=300)
    assert 0 < waiting <= WRITERS, f"{waiting} syncs waited on the rows: both runs were writing"
    tally.add("faults_tried")

    assert by_hand.is_completed(), by_hand
    mine = {k.key: k for k in by_hand.result().keys}
    assert not {k: o.reason for k, o in mine.items() if o.outcome not in SUCCEEDED}
    assert_entry(by_hand.state_details.flow_run_id, list(reversed(manual)), OBJECT, ADMIN)

    assert night.is_completed(), night
    (district,) = night.result()
    (entry,) = district.objects
    assert entry.sync_run_id and not entry.error, entry
    # The nightly's sync is a Sync History entry of its own (in the ledger, no flow run).
    hand_window = write_window(str(by_hand.state_details.flow_run_id))
    child_window = write_window(entry.sync_run_id)
    # One after the other: a run waits for the lock before its first verification, so the
    # later run's first write comes after the earlier run's last.
    first, second = sorted([hand_window, child_window])
    assert first[1] <= second[0], (hand_window, child_window)
    sent = entry.plan.keys
    if child_window < hand_window:
        assert set(sent) >= set(involved) - set(manual)  # every seeded difference was sent
    assert_entry(entry.sync_run_id, sent, OBJECT, REQUESTER)
    nightly_outcomes = get_entry(entry.sync_run_id, user=ADMIN).outcomes
    wrong = {k.key: k.reason for k in nightly_outcomes if k.outcome not in SUCCEEDED}
    # Only the state's refusals may fail (an unmapped code), never a lock or a deadlock.
    assert set(wrong) <= refused, wrong
    assert all("no state mapping" in reason for reason in wrong.values()), wrong

    keys = sorted(set(involved) | set(sent))
    in_sync = keys_in_sync(dbs, OBJECT, keys)
    assert not [k for k in keys if not in_sync[k] and k not in refused]
    verdict = judge_keys(dbs, OBJECT, before, involved)
    assert not verdict.lost, sorted(verdict.lost)
    tally.add("runs_survived", 2)


def write_window(run_id: str):
    """(first, last) time a request recorded a key in the ledger (each key's row is
    written in the key's transaction): its writes, which hold the district's lock."""
    from selective_sync.history.ledger import ledger_history
    from selective_sync.ledger import read_keys
    from selective_sync.settings import get_settings

    with ledger_history(get_settings()) as history:
        times = [k.recorded_at for k in read_keys(history.engine, run_id)]
    assert times, run_id
    return min(times), max(times)


@pytest.mark.parametrize("kind", SERVERS)
def test_a_deadlock_mid_fan_out_is_retried(
    kind, tmp_path, monkeypatch, other_districts, module_stack
):
    """A real deadlock (the database picks the sync's transaction as the victim) between
    the sync of one key and another writer: the key is retried and ends synced."""
    from sqlalchemy import update

    from selective_sync.db import make_engine
    from selective_sync.schema import district_metadata

    dbs = module_stack.enter_context(demo_databases(kind, tmp_path / "data"))
    dbs.configure(monkeypatch)
    dbs.bootstrap_admin()
    other_districts.watch(dbs.state_url)

    refused = refused_keys(dbs.manifest, OBJECT)
    keys = [k for k in district_keys(dbs, OBJECT) if k not in refused][:60]
    edit_at_district(dbs, keys, "cycle-")
    target = keys[30]
    # The target's person row differs too: its transaction writes it first, then identities.
    person = district_metadata.tables["person"]
    engine = make_engine(dbs.district_url)
    with engine.begin() as conn:
        conn.execute(
            update(person).where(person.c.person_id == target).values(state_id="DEADLOCK1")
        )
    engine.dispose()
    before = state_rows(dbs, OBJECT, keys)

    run = Background(lambda: run_flow(OBJECT, keys), "selective-sync")
    with Deadlock(dbs, target) as other, running(run, first=other.release):
        wait_until(
            lambda: other.waiting() >= 1,
            60,
            f"the sync of {target} waiting",
            explain=other.sessions,
        )
        other.close_cycle()  # returns once the sync's transaction was the victim
        other.release()
        state = run.outcome(timeout=120)
    tally.add("faults_tried")

    assert state.is_completed(), state
    got = {k.key: k for k in state.result().keys}
    assert got[target].outcome is Outcome.SYNCED, got[target]
    assert got[target].attempts >= 2, got[target]  # the deadlock hit it and it was retried
    assert {k.outcome for k in got.values()} == {Outcome.SYNCED}
    assert verify(dbs, OBJECT, keys).errors == 0
    verdict = judge_keys(dbs, OBJECT, before, keys)
    assert not verdict.lost and verdict.synced == set(keys)
    tally.add("runs_survived")
