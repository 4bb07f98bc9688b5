"""A key gets the same retry budget whether its request runs one task per key or batches.

SQLite: another connection holds the state's write lock for the whole fan-out, so every
attempt of every key meets a real "database is locked" fault; with the budget shortened
through the settings, each key must have taken exactly that many attempts in both modes
(Prefect's task retries for one task per key, the core's RetryPolicy inside a batch), and
be left untouched.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing

import pytest
import tally

from flows.history_store import get_entry
from selective_sync.models import Outcome

from .support import (
    ADMIN,
    demo_databases,
    district_keys,
    edit_at_district,
    judge_keys,
    refused_keys,
    run_flow,
    state_rows,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

OBJECT = "PersonIdentity"
ATTEMPTS = 3
MODES = {"one task per key": "1000", "batches": "1"}  # SELECTIVE_SYNC_PER_KEY_TASK_LIMIT


class LockAfterLedger(threading.Thread):
    """Takes the SQLite state's write lock as soon as a new request row is in the ledger,
    and holds it until released."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.held = path, False
        self._release = threading.Event()
        with closing(sqlite3.connect(path)) as conn:
            self.before = conn.execute("SELECT count(*) FROM sync_request").fetchone()[0]

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            deadline = time.monotonic() + 120
            while conn.execute("SELECT count(*) FROM sync_request").fetchone()[0] <= self.before:
                if time.monotonic() > deadline or self._release.is_set():
                    return
                time.sleep(0.005)
            conn.execute("BEGIN IMMEDIATE")
            self.held = True
            self._release.wait(300)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def release(self) -> None:
        self._release.set()
        self.join(30)


def test_a_key_gets_the_same_retry_budget_in_every_mode(
    tmp_path, monkeypatch, other_districts, module_stack
):
    dbs = module_stack.enter_context(demo_databases("sqlite", tmp_path / "data"))
    refused = refused_keys(dbs.manifest, OBJECT)
    keys = [k for k in district_keys(dbs, OBJECT) if k not in refused][:3]
    edit_at_district(dbs, keys, "budget-")  # every key has rows to write
    before = state_rows(dbs, OBJECT, keys)

    other_districts.watch(dbs.state_url)

    attempts: dict[str, dict[int, int]] = {}
    for mode, limit in MODES.items():
        dbs.configure(
            monkeypatch,
            retry_attempts=str(ATTEMPTS),
            retry_backoff_s="0.05",
            sqlite_busy_timeout_s="0.1",
            per_key_task_limit=limit,
        )
        if not attempts:
            dbs.bootstrap_admin()
        # Once the request is in the ledger (before any key is written), another writer
        # holds the state's lock: readers go on (WAL); every writer is refused.
        holder = LockAfterLedger(dbs.folder / "state.db")
        holder.start()
        try:
            state = run_flow(OBJECT, keys)
        finally:
            holder.release()
        assert holder.held, "the request never reached the ledger"
        tally.add("faults_tried")

        # Every key failed on the fault: the run says it could not be processed (the
        # history keeps no transient flag; the run's failure says every key had one).
        assert state.is_failed(), (mode, state)
        assert "every key failed on a database fault" in state.message, (mode, state.message)
        entry = get_entry(str(state.state_details.flow_run_id), user=ADMIN)
        got = {k.key: k for k in entry.outcomes}
        assert list(got) == keys, mode
        for outcome in got.values():
            assert outcome.outcome is Outcome.FAILED, (mode, outcome)
            assert f"after {ATTEMPTS} attempts" in outcome.reason, (mode, outcome.reason)
            assert "database is locked" in outcome.reason, (mode, outcome.reason)
        attempts[mode] = {key: outcome.attempts for key, outcome in got.items()}
        verdict = judge_keys(dbs, OBJECT, before, keys)
        assert verdict.untouched == set(keys), (mode, verdict)

    assert attempts["one task per key"] == attempts["batches"] == dict.fromkeys(keys, ATTEMPTS)
    tally.add("runs_survived")
