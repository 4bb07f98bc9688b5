"""The single-machine alternative: one `python -m flows.serve` process (deployments/serve.sh)
serves every deployment of prefect.yaml, schedules included, and runs their flow runs."""

from __future__ import annotations

import importlib
import sys
import time

import pytest
import yaml

from .harness import ADMIN, REPO, Server, fixable, verify_keys


@pytest.fixture(scope="module")
def served(server: Server, demo_data):
    env = server.env(PYTHON=sys.executable, **demo_data.env())
    script = str(REPO / "deployments" / "serve.sh")
    proc = server.start("serve", ["bash", script, "--limit", "2"], env)
    wanted = len(yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"])
    deadline = time.monotonic() + 90
    with server.http() as client:
        while len(client.post("/deployments/filter", json={}).json()) < wanted:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not register {wanted} deployments:\n{proc.tail()}")
            time.sleep(0.5)
    yield server
    proc.stop()


def test_serve_registers_the_deployments_with_their_schedules(served: Server):
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    with served.http() as client:
        for entry in spec["deployments"]:
            module, _, attr = entry["entrypoint"].partition(":")
            flow_name = getattr(importlib.import_module(module), attr).name
            response = client.get(f"/deployments/name/{flow_name}/{entry['name']}")
            assert response.status_code == 200, (flow_name, response.text)
            deployment = response.json()
            assert deployment["work_pool_name"] is None  # served, not on a pool
            assert deployment["enforce_parameter_schema"] is True
            crons = [s["schedule"]["cron"] for s in deployment["schedules"]]
            assert crons == [s["cron"] for s in entry.get("schedules") or []]


def test_served_selective_sync_runs_and_records_history(served: Server, demo_data):
    keys = fixable(demo_data.manifest, "PersonIdentity", ["mismatched"])
    assert verify_keys(demo_data.dir, "PersonIdentity", keys).errors == len(keys)
    # The IDs as the form sends them: one text (the schema's single text box).
    pasted = ", ".join(map(str, keys))
    refused = served.create_run(
        "selective-sync/sync-records", {"object": "Bogus", "ids": pasted, "requested_by": ADMIN}
    )
    assert refused.status_code in (409, 422), refused.text
    response = served.create_run(
        "selective-sync/sync-records",
        {"object": "PersonIdentity", "ids": pasted, "requested_by": ADMIN},
    )
    assert response.status_code == 201, response.text
    run = served.wait(response.json()["id"])
    assert run["state"]["type"] == "COMPLETED", served.logs()
    artifact_keys = {a["key"] for a in served.artifacts([run["id"]])}
    assert {"sync-request-275", "sync-outcomes-275"} <= artifact_keys
    assert verify_keys(demo_data.dir, "PersonIdentity", keys).errors == 0
