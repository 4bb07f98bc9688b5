"""Served runs start warm (flows/warm_start.py): each run's process is forked from the
forkserver that ``python -m flows.serve`` started with Prefect and the flows imported, not
a new interpreter; such a run completes, and is cancelled, as Prefect's own would be."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from .harness import REPO, TERMINAL, Server

PROBE = "tests.integration.warm_probe"


@pytest.fixture(scope="module")
def served(server: Server, tmp_path_factory):
    """``python -m flows.serve`` serving the probe flows (as it serves prefect.yaml)."""
    spec = {
        "deployments": [
            {"name": "probe", "entrypoint": f"{PROBE}:warm_probe"},
            {"name": "sleeper", "entrypoint": f"{PROBE}:warm_sleeper"},
        ]
    }
    path = tmp_path_factory.mktemp("warm") / "deployments.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = server.start(
        "serve-warm",
        [sys.executable, "-m", "flows.serve", "--deployments", str(path)],
        server.env(PREFECT_RUNNER_POLL_FREQUENCY="1"),
        cwd=REPO,
    )
    deadline = time.monotonic() + 120
    with server.http() as client:
        while len(client.post("/deployments/filter", json={}).json()) < 2:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not register the probes:\n{proc.tail()}")
            time.sleep(0.5)
    yield server, proc
    proc.stop()


def run_probe(server: Server, out: Path) -> dict:
    response = server.create_run("warm-probe/probe", {"out": str(out)})
    assert response.status_code == 201, response.text
    run = server.wait(response.json()["id"])
    assert run["state"]["type"] == "COMPLETED", server.logs()
    return json.loads(out.read_text())


def test_each_run_is_forked_from_the_preloaded_forkserver(served, tmp_path):
    server, serve = served
    first = run_probe(server, tmp_path / "first.json")
    second = run_probe(server, tmp_path / "second.json")
    # Both runs' parent is the forkserver, started once with the flows' modules imported;
    # not the serve process (which Prefect's `python -m prefect.engine` child would have).
    for record in (first, second):
        assert "multiprocessing.forkserver" in record["parent"], record
        assert PROBE in record["parent"] and "prefect.engine" in record["parent"], record
        assert record["ppid"] != serve.popen.pid
        assert "-m" not in record["argv"], record
    assert first["ppid"] == second["ppid"] and first["pid"] != second["pid"]


def test_a_warm_run_is_cancelled_like_any_other(served, tmp_path):
    server, _ = served
    out = tmp_path / "pid"
    response = server.create_run("warm-sleeper/sleeper", {"out": str(out)})
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while not out.exists():
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.2)
    pid = int(out.read_text())
    with server.http() as client:
        cancel = {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True}
        answer = client.post(f"/flow_runs/{run_id}/set_state", json=cancel)
        assert answer.status_code in (200, 201), answer.text
    run = server.wait(run_id, timeout=120)
    assert run["state"]["type"] == "CANCELLED", (run["state"], server.logs())
    assert run["state"]["type"] in TERMINAL
    deadline = time.monotonic() + 30
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} of the cancelled run still runs"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for this purpose: it runs nothing.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()
