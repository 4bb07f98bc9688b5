"""Transient faults in the middle of a fan-out are retried and every key ends right.

PostgreSQL: another session terminates the sync's connections to the state database
(``pg_terminate_backend``) while a request of 300 keys, and one of 10,000, is written in
batch tasks (each key its own transaction and retry budget). SQLite: another connection
holds the write lock longer than the busy timeout while 300 keys go one task run each
(Prefect's retries). Afterwards the ledger marks written exactly the keys that changed.
"""

from __future__ import annotations

import pytest
import tally

from selective_sync.models import Outcome

from .faults import PgTerminator, SqliteWriteLock
from .support import (
    demo_databases,
    district_keys,
    edit_at_district,
    expected_outcomes,
    judge_keys,
    ledger_disagreements,
    refused_keys,
    run_flow,
    state_rows,
    verify,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

OBJECT = "PersonIdentity"
KEYS = 300
BIG = 10_000
ABSENT = [999_999_901, 999_999_902]


@pytest.mark.parametrize(
    ("kind", "mode", "count"),
    [
        ("postgresql", "batches", KEYS),
        ("sqlite", "one task per key", KEYS),
        ("postgresql", "batches", BIG),
    ],
    ids=[
        "postgresql-terminated-connections",
        "sqlite-write-lock",
        "postgresql-terminated-connections-10000-keys",
    ],
)
def test_transient_faults_mid_fan_out_are_retried(
    kind, mode, count, tmp_path, monkeypatch, other_districts, module_stack
):
    persons = max(400, count * 11 // 10 + 100)
    dbs = module_stack.enter_context(demo_databases(kind, tmp_path / "data", persons))
    extra = {}
    if kind == "sqlite":
        # A writer gives up on the lock after 0.2 s (held 0.8 s below): a real fault.
        extra["sqlite_busy_timeout_s"] = "0.2"
    if mode == "one task per key":
        extra["per_key_task_limit"] = "1000"
    dbs.configure(monkeypatch, **extra)
    dbs.bootstrap_admin()
    other_districts.watch(dbs.state_url)

    refused = refused_keys(dbs.manifest, OBJECT)
    fixable = [k for k in district_keys(dbs, OBJECT) if k not in refused][:count]
    assert len(fixable) == count
    # Two keys in three differ at the district (every identity row of the person), so
    # the fan-out writes all along and a fault lands on a key being written.
    edit_at_district(dbs, [k for i, k in enumerate(fixable) if i % 3], "fault-")
    keys = fixable + ABSENT
    expected = expected_outcomes(dbs, OBJECT, keys, refused)
    assert sum(o is Outcome.SYNCED for o in expected.values()) >= count // 2
    before = state_rows(dbs, OBJECT, keys)

    if kind == "postgresql":
        # Spread over the run: a 10,000-key request takes tens of seconds.
        gap = 0.25 if count == KEYS else 2.0
        injector = PgTerminator(dbs.state_url, times=5, interval_s=gap)
    else:
        # Holds 3 s apart: a key's 4 attempts (backoff 0.5, 1, 2 s + jitter) can meet two
        # holds at most, so a transient fault is retried, never exhausted, even under load
        # (1 s apart, a loaded run once saw a key fail in all four attempts).
        injector = SqliteWriteLock(dbs.folder / "state.db", times=3, hold_s=0.8, gap_s=3.0)
    with injector:
        state = run_flow(OBJECT, keys)
    tally.add("faults_tried", injector.done)
    assert injector.done >= 1, "the fault never struck: the fan-out ended first"

    assert state.is_completed(), state
    result = state.result()
    got = {k.key: k for k in result.keys}
    assert list(got) == keys
    wrong = {}
    for key, want in expected.items():
        outcome = got[key]
        if outcome.outcome is want:
            continue
        # A commit whose answer was cut off: written, then found equal by the retry.
        cut_off = want is Outcome.SYNCED and outcome.outcome is Outcome.UNCHANGED
        if cut_off and outcome.attempts > 1:
            continue
        wrong[key] = (want.value, outcome.outcome.value, outcome.reason, outcome.attempts)
    assert not wrong, wrong
    retried = [k.key for k in result.keys if k.attempts > 1]
    assert retried, "no key needed a second attempt: the fault did not hit a key"
    assert result.succeeded == count and result.total == len(keys)

    after = verify(dbs, OBJECT, keys)
    assert after.errors == 0, after.issues[:5]
    verdict = judge_keys(dbs, OBJECT, before, keys)
    assert not verdict.lost, sorted(verdict.lost)
    # Every key present at the district now holds exactly the district's rows.
    assert verdict.synced == set(keys), sorted(set(keys) - verdict.synced)
    # The ledger marks written exactly the keys whose rows changed, faults and all.
    run_id = str(state.state_details.flow_run_id)
    disagreeing = ledger_disagreements(dbs, OBJECT, run_id, before, keys)
    assert not disagreeing, sorted(disagreeing)[:20]
    tally.add("runs_survived")
