"""The nightly over the work pool, as an operator runs it: a real Prefect server, the
deployments (deployments/setup.sh), two workers (deployments/worker.sh), several districts
on a PostgreSQL state database, one of them broken. The districts go to the pool in
batches; two workers reconcile two batches at once; the broken district is reported and
the others finish."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime

import pytest
from dbservers import server_database

from .harness import ADMIN, POOL, PREFECT, REPO, Server

GOOD = [401, 402, 403, 404]
BROKEN = 405
PERSONS = 150


@pytest.fixture(scope="module")
def districts(tmp_path_factory):
    """Four demo districts (each its own SQLite file) on one PostgreSQL state database, a
    fifth whose database does not exist; the reconciliation's requester holds W."""
    from selective_sync.demo import generate_demo
    from selective_sync.rights import ALL_DISTRICTS, RightsStore

    base = tmp_path_factory.mktemp("nightly-pool")
    with server_database("postgresql") as state_url:
        manifests = {}
        for number in GOOD:
            manifest = generate_demo(
                base / f"d{number}",
                persons=PERSONS,
                seed=number,
                state_url=state_url,
                district_number=number,
                district_name=f"POOL {number}",
            )
            manifests[number] = json.loads(manifest.to_json())
        lines = ["districts:"]
        for number in [*GOOD, BROKEN]:
            path = base / f"d{number}" / ("missing/" if number == BROKEN else "") / "district.db"
            lines += [
                f"  - number: {number}",
                f"    name: POOL {number}",
                f"    url: sqlite:///{path}",
            ]
        (base / "districts.yaml").write_text("\n".join(lines) + "\n")
        with RightsStore(state_url, create_missing=True) as store:
            store.bootstrap_admin(ADMIN)
            store.grant(ADMIN, "scheduled reconciliation", "W", district=ALL_DISTRICTS)
        env = {
            "SELECTIVE_SYNC_DISTRICTS_FILE": str(base / "districts.yaml"),
            "SELECTIVE_SYNC_STATE_URL": state_url,
            "SELECTIVE_SYNC_DATA_DIR": str(base / "data"),
        }
        yield base, env, manifests, state_url


@pytest.fixture(scope="module")
def two_workers(server: Server, districts):
    """The deployments, and two workers on the pool with the districts' settings."""
    _base, app_env, _manifests, _url = districts
    done = server.run(
        ["bash", str(REPO / "deployments" / "setup.sh")], server.env(PREFECT=PREFECT), cwd="/"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    env = server.env(
        PREFECT=PREFECT,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        **app_env,
    )
    procs = [
        server.start(
            f"worker-{i}", ["bash", str(REPO / "deployments" / "worker.sh"), "--name", f"w{i}"], env
        )
        for i in (1, 2)
    ]
    deadline = time.monotonic() + 90
    with server.http() as client:
        while len(client.post(f"/work_pools/{POOL}/workers/filter", json={}).json()) < 2:
            if any(p.popen.poll() is not None for p in procs) or time.monotonic() > deadline:
                pytest.fail("the workers did not register:\n" + "\n".join(p.tail() for p in procs))
            time.sleep(0.5)
    yield procs
    for proc in procs:
        proc.stop()


def task_runs(server: Server, flow_run_ids: list[str]) -> list[dict]:
    with server.http() as client:
        response = client.post(
            "/task_runs/filter",
            json={"flow_runs": {"id": {"any_": flow_run_ids}}, "limit": 200},
        )
        response.raise_for_status()
        return response.json()


def in_flight(server: Server, run: dict) -> tuple[datetime, datetime]:
    """When a worker took the run (its Pending state) and when the run ended."""
    with server.http() as client:
        response = client.get("/flow_run_states/", params={"flow_run_id": run["id"]})
        response.raise_for_status()
    taken = min(
        datetime.fromisoformat(state["timestamp"])
        for state in response.json()
        if state["type"] == "PENDING"
    )
    return taken, datetime.fromisoformat(run["end_time"])


def both_running(server: Server, night_id: str, timeout: float = 300) -> None:
    """Wait until the night has two batch runs and both are Running."""
    deadline = time.monotonic() + timeout
    while True:
        body = {"flow_runs": {"parent_flow_run_id": {"any_": [night_id]}}}
        states = [(r.get("state") or {}).get("type") for r in server.flow_runs(body)]
        if states.count("RUNNING") == 2:
            return
        if time.monotonic() > deadline or "FAILED" in states or "CRASHED" in states:
            pytest.fail(f"the two batches did not run at once: {states}\n{server.logs()}")
        time.sleep(0.5)


def test_two_workers_reconcile_districts_at_once_past_a_broken_one(
    server: Server, two_workers, districts
):
    from selective_sync.db import make_engine
    from selective_sync.ledger import read_requests
    from selective_sync.locks import district_lock
    from selective_sync.registry import get_object, object_names
    from selective_sync.settings import sqlite_url
    from selective_sync.verification.engine import verify_object

    base, _env, manifests, state_url = districts
    # The good districts' locks, held as a sync in progress holds them, keep each batch at
    # its first district until both batches are running: "two at once" is then a fact of
    # the run, not of how fast a loaded machine submits the second batch.
    with contextlib.ExitStack() as held:
        for number in GOOD:
            held.enter_context(district_lock(state_url, number, 60, "the test", exclusive=False))
        response = server.create_run("reconcile/reconcile-nightly", {})
        assert response.status_code == 201, response.text
        night_id = response.json()["id"]
        both_running(server, night_id)
    night = server.wait(night_id, timeout=600)
    # The broken district fails the night, after every other district was reconciled.
    assert night["state"]["type"] == "FAILED", night["state"]
    assert f"district {BROKEN}" in night["state"]["message"]

    batches = server.flow_runs({"flow_runs": {"parent_flow_run_id": {"any_": [night["id"]]}}})
    # Five districts, a concurrency limit of 2: one run for each slot.
    assert sorted(d for b in batches for d in b["parameters"]["districts"]) == [*GOOD, BROKEN]
    assert len(batches) == 2
    for batch in batches:
        broken = BROKEN in batch["parameters"]["districts"]
        assert batch["state"]["type"] == ("FAILED" if broken else "COMPLETED"), batch["state"]
    # Two at once: each run was taken by a worker (Pending) before the other had ended, and
    # each ran in its own process.
    (a_taken, a_end), (b_taken, b_end) = (in_flight(server, b) for b in batches)
    assert a_taken < b_end and b_taken < a_end, batches
    assert len({b["infrastructure_pid"] for b in batches}) == 2
    # Each district a task run in its batch's run.
    names = sorted(t["name"] for t in task_runs(server, [b["id"] for b in batches]))
    assert names == [f"reconcile-district-{n}" for n in sorted([*GOOD, BROKEN])]

    (summary,) = server.artifacts([night["id"]], key={"any_": ["reconcile-summary"]})
    text = summary["data"]
    lines = [line for line in text.splitlines() if line.startswith("| 40")]
    assert lines[0].startswith(f"| {BROKEN} POOL {BROKEN}") and "does not exist" in lines[0]
    assert "districts not reconciled: **1**" in text

    # Every good district reconciled: its syncs in the ledger, only the refused keys (and
    # those missing at the district, which a sync never touches) left differing.
    state = make_engine(state_url)
    try:
        for number in GOOD:
            requests = [r for r in read_requests(state, number) if r.origin == "nightly"]
            assert requests and all(r.status.value == "Complete" for r in requests), requests
            district = make_engine(sqlite_url(base / f"d{number}" / "district.db"))
            try:
                for name in object_names():
                    found = verify_object(district, state, get_object(name), number)
                    refused = {
                        k for keys in manifests[number]["will_fail"][name].values() for k in keys
                    }
                    left = set(found.missing_at_state) | set(found.mismatched)
                    assert left <= refused, (number, name, left - refused)
            finally:
                district.dispose()
    finally:
        state.dispose()
