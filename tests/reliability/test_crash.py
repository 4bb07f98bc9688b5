"""SIGKILL of the flow run's process in the middle of a large request.

The production path: the deployments are served by ``python -m flows.serve`` (a Prefect
runner, what ``deployments/serve.sh`` starts) against a real Prefect API (this session's),
and the run is created through the API like a UI click. The runner executes each flow run
in a child process; that process, not the runner, is killed with SIGKILL as soon as the
run's progress artifact shows keys done. The runner then reports the run Crashed, the
Sync History shows it crashed, every key is either fully synced or untouched, and the
same request run again converges to a clean verification.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest
import tally
from integration.harness import REPO, clean_env, start
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL

from flows.history_store import get_entry, list_entries
from selective_sync.models import Outcome

from .support import (
    ADMIN,
    demo_databases,
    district_keys,
    edit_at_district,
    judge_keys,
    ledger_disagreements,
    refused_keys,
    run_flow,
    state_rows,
    verify,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

OBJECT = "PersonIdentity"
PERSONS = 5400
DEPLOYMENT = "selective-sync/sync-records"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
HEARTBEAT_S = 2


def run_state(client, run_id) -> str:
    state = client.read_flow_run(run_id).state
    return state.type.value if state else "NONE"


def progress_of(client, run_id) -> float:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
    )
    found = [a.data for a in artifacts if a.key == "sync-progress-275" and a.data is not None]
    return float(found[0]) if found else 0.0


def flow_run_process(runner_pid: int, run_id) -> psutil.Process | None:
    """The runner's descendant executing ``run_id``: the one with PREFECT__FLOW_RUN_ID in
    its environment (a run started cold), or else the one child of the runner's forkserver
    (flows/warm_start.py: a forked child's new environment is not in /proc, and this test
    has one run at a time)."""
    forked = []
    for child in psutil.Process(runner_pid).children(recursive=True):
        try:
            if child.environ().get("PREFECT__FLOW_RUN_ID") == str(run_id):
                return child
            parent = child.parent()
            if parent is not None and "forkserver" in " ".join(parent.cmdline()):
                forked.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert len(forked) <= 1, f"more than one forked run process: {forked}"
    return forked[0] if forked else None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigkill_of_the_flow_run_process(
    kind, tmp_path, monkeypatch, other_districts, module_stack
):
    dbs = module_stack.enter_context(demo_databases(kind, tmp_path / "data", PERSONS))
    dbs.configure(monkeypatch)
    dbs.bootstrap_admin()
    other_districts.watch(dbs.state_url)

    refused = refused_keys(dbs.manifest, OBJECT)
    keys = [k for k in district_keys(dbs, OBJECT) if k not in refused]
    assert len(keys) >= 5000
    edit_at_district(dbs, [k for i, k in enumerate(keys) if i % 4], "crash-")
    before = state_rows(dbs, OBJECT, keys)

    home, logs = tmp_path / "prefect-home", tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    # A short heartbeat, here and in the runner, so the dead request reads Crashed soon.
    monkeypatch.setenv("SELECTIVE_SYNC_LEDGER_HEARTBEAT_S", str(HEARTBEAT_S))
    env = clean_env(
        PREFECT_API_URL=PREFECT_API_URL.value(),
        PREFECT_HOME=str(home),
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        SELECTIVE_SYNC_LEDGER_HEARTBEAT_S=str(HEARTBEAT_S),
        **dbs.env(),
    )
    runner = start("serve", [sys.executable, "-m", "flows.serve"], env, logs, cwd=REPO)
    try:
        with get_client(sync_client=True) as client:

            def deployment_ready() -> bool:
                assert runner.popen.poll() is None, runner.tail()
                try:
                    client.read_deployment_by_name(DEPLOYMENT)
                except Exception:
                    return False
                return True

            wait_until(deployment_ready, 90, "the runner to serve the deployments", step=0.3)
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters={
                    "object": OBJECT,
                    "ids": ", ".join(map(str, keys)),
                    "requested_by": ADMIN,
                },
            )
            wait_until(
                lambda: progress_of(client, run.id) > 0 or run_state(client, run.id) in TERMINAL,
                120,
                f"progress of run {run.id}\n{runner.tail()}",
                step=0.05,
            )
            progress = progress_of(client, run.id)
            assert 0 < progress < 100, (progress, run_state(client, run.id), runner.tail())
            process = flow_run_process(runner.popen.pid, run.id)
            assert process is not None, runner.tail()
            os.kill(process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            tally.add("faults_tried")

            wait_until(
                lambda: run_state(client, run.id) == "CRASHED",
                60,
                f"the runner to report run {run.id} crashed\n{runner.tail()}",
                step=0.2,
            )
            assert runner.popen.poll() is None, "the runner died with the flow run"
            assert time.monotonic() - killed_at < 60
    finally:
        runner.stop()
        # The API is the session's: deployments left behind would send later nightlies
        # to a work pool nobody serves.
        with get_client(sync_client=True) as client:
            for deployment in client.read_deployments():
                client.delete_deployment(deployment.id)

    # The Sync History (the ledger) shows the run as crashed within the heartbeat bound,
    # with what was asked and the keys it wrote.
    wait_until(
        lambda: get_entry(str(run.id), user=ADMIN).status == "Crashed",
        4 * HEARTBEAT_S + 30,
        "the dead request to read Crashed",
        step=0.5,
    )
    entry = get_entry(str(run.id), user=ADMIN)
    assert entry.keys == keys and entry.object == OBJECT
    assert entry.requested_by == ADMIN
    assert entry.records == f"-/{len(keys)}"
    assert entry.failure, entry
    listed = {e.run_id: e for e in list_entries(user=ADMIN)}
    assert listed[str(run.id)].status == "Crashed"

    # Every key fully synced or untouched; the kill came mid-way, so there are both.
    verdict = judge_keys(dbs, OBJECT, before, keys)
    assert not verdict.lost, sorted(verdict.lost)[:20]
    edited = {k for i, k in enumerate(keys) if i % 4}
    assert verdict.synced & edited and verdict.untouched & edited, (
        len(verdict.synced & edited),
        len(verdict.untouched & edited),
    )
    # The ledger says exactly which keys the request changed: those it marks written.
    disagreeing = ledger_disagreements(dbs, OBJECT, str(run.id), before, keys)
    assert not disagreeing, sorted(disagreeing)[:20]

    # The same request again converges.
    again = run_flow(OBJECT, keys)
    assert again.is_completed(), again
    result = again.result()
    assert {k.outcome for k in result.keys} <= {Outcome.SYNCED, Outcome.UNCHANGED}
    assert verify(dbs, OBJECT, keys).errors == 0
    assert judge_keys(dbs, OBJECT, before, keys).synced == set(keys)
    tally.add("runs_survived")
