"""The per-district lock (selective_sync.locks): a district's reconciliation and its manual
syncs never overlap, on SQLite, PostgreSQL and MariaDB, between real processes; a holder
that dies (SIGKILL) leaves no stale lock; and two real concurrent runs (a manual sync and
the district's reconciliation) write one after the other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from selective_sync.errors import DistrictBusy
from selective_sync.locks import district_lock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from selective_sync.locks import district_lock
    url, district, exclusive = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "x"
    with district_lock(url, district, 5, "holder", exclusive=exclusive):
        print("held", flush=True)
        time.sleep(120)
    """
)


def hold(url: str, district: int, exclusive: bool) -> subprocess.Popen:
    """Another process holding the district's lock until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(district), "x" if exclusive else "s"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout.readline().strip() == "held", "the holder did not get the lock"
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def can_lock(url: str, district: int, exclusive: bool, timeout: float = 0.6) -> bool:
    try:
        with district_lock(url, district, timeout, "test", exclusive=exclusive):
            return True
    except DistrictBusy:
        return False


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def state_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    from dbservers import server_database

    with server_database(request.param) as url:
        yield url


def test_reconciliation_excludes_syncs_and_syncs_share(state_url):
    nightly = hold(state_url, 275, exclusive=True)
    try:
        assert not can_lock(state_url, 275, exclusive=False)  # a manual sync waits
        assert not can_lock(state_url, 275, exclusive=True)
        assert can_lock(state_url, 276, exclusive=True)  # another district is free
    finally:
        kill(nightly)  # SIGKILL: the lock goes with the process
    assert can_lock(state_url, 275, exclusive=True, timeout=5)

    manual = hold(state_url, 275, exclusive=False)
    try:
        assert can_lock(state_url, 275, exclusive=False)  # two syncs may overlap
        assert not can_lock(state_url, 275, exclusive=True)  # the nightly waits
    finally:
        kill(manual)
    assert can_lock(state_url, 275, exclusive=True, timeout=5)


def test_a_wait_ends_when_the_holder_finishes_and_a_timeout_is_a_clear_error(state_url):
    nightly = hold(state_url, 275, exclusive=True)
    threading.Timer(1.5, kill, [nightly]).start()
    started = time.monotonic()
    assert can_lock(state_url, 275, exclusive=False, timeout=30)
    assert 1.0 < time.monotonic() - started < 20
    nightly = hold(state_url, 275, exclusive=True)
    try:
        busy = pytest.raises(DistrictBusy, match="district 275 is being synced or reconciled")
        with busy, district_lock(state_url, 275, 0.3, "the selective sync", exclusive=False):
            pass
    finally:
        kill(nightly)


def test_the_lock_is_reentrant_within_one_flow(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with district_lock(url, 275, 1, "reconcile", exclusive=True):
        # The reconciliation's own syncs (subflows, same context) enter it again.
        with district_lock(url, 275, 0.3, "its sync", exclusive=False):
            pass
        # Another thread (another run in this process) does not.
        outcome = []
        thread = threading.Thread(target=lambda: outcome.append(can_lock(url, 275, False, 0.3)))
        thread.start()
        thread.join()
        assert outcome == [False]


# ---------------------------------------------------------------- two real concurrent runs


@pytest.mark.usefixtures("prefect_api")
def test_a_manual_sync_and_the_reconciliation_of_its_district_never_overlap(demo, admin):
    """Both started at once on the demo district: whichever gets the lock first writes
    first; the other's writes all come after (each key's row in the ledger is written in
    the key's own transaction: its time is the write's)."""
    from flows.reconcile import reconcile_districts
    from flows.sync_request import selective_sync
    from selective_sync.history.ledger import ledger_history
    from selective_sync.ledger import read_keys
    from selective_sync.reconcile import REQUESTER
    from selective_sync.rights import ALL_DISTRICTS, RightsStore
    from selective_sync.settings import get_settings

    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    manual_keys = demo.manifest["PersonIdentity"]["mismatched"][:40]
    states = {}

    def nightly():
        states["nightly"] = reconcile_districts(
            districts=[275], objects=["PersonIdentity"], max_keys=1000, return_state=True
        )

    def by_hand():
        states["manual"] = selective_sync(
            object="PersonIdentity", ids=manual_keys, requested_by=admin, return_state=True
        )

    threads = [threading.Thread(target=nightly), threading.Thread(target=by_hand)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert states["manual"].is_completed(), states["manual"]
    assert states["nightly"].is_completed(), states["nightly"]

    def writes(run_ids):
        with ledger_history(get_settings()) as history:
            times = [k.recorded_at for run in run_ids for k in read_keys(history.engine, run)]
        assert times, run_ids
        return min(times), max(times)

    manual = writes([str(states["manual"].state_details.flow_run_id)])
    (district,) = states["nightly"].result()
    night_window = writes([o.sync_run_id for o in district.objects if o.sync_run_id])
    # The two windows are disjoint: one ran entirely before the other.
    assert manual[1] <= night_window[0] or night_window[1] <= manual[0], (manual, night_window)
