"""selective-sync as an operator runs it: a real Prefect server, the process work pool and
`prefect deploy --all` (deployments/setup.sh), a worker (deployments/worker.sh), and runs
triggered from the CLI, from REST, by the reconcile flow and on a Dask cluster."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from .harness import ADMIN, POOL, PREFECT, REPO, Server, fixable, verify_keys

SYNC = "selective-sync/sync-records"
DEPLOYMENTS = {
    SYNC,
    "verification-summary/verify-district",
    "reconcile/reconcile-nightly",
    "reconcile-districts/reconcile-some-districts",
    "delete-history-entry/delete-entry",
    "clear-sync-history/clear-district-history",
    "find-ids/find-ids-by-filter",
}
SUCCEEDED = {"synced", "unchanged"}


@pytest.fixture(scope="module")
def deployed(server: Server) -> Server:
    """The work pool and every deployment, made by the operator's script."""
    done = server.run(
        ["bash", str(REPO / "deployments" / "setup.sh")], server.env(PREFECT=PREFECT), cwd="/"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return server


@pytest.fixture(scope="module")
def worker(deployed: Server, demo_data):
    """A worker on the pool, started by the operator's script, syncing the demo copy."""
    env = deployed.env(
        PREFECT=PREFECT,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        **demo_data.env(),
    )
    proc = deployed.start(
        "worker", ["bash", str(REPO / "deployments" / "worker.sh"), "--name", "it"], env
    )
    deadline = time.monotonic() + 60
    with deployed.http() as client:
        while not client.post(f"/work_pools/{POOL}/workers/filter", json={}).json():
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker did not register:\n{proc.tail()}")
            time.sleep(0.5)
    yield proc
    proc.stop()


def run_cli(server: Server, *args: str):
    return server.run([PREFECT, "deployment", "run", *args])


def cli_run_id(output: str) -> str:
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, output
    return match.group(1)


def outcomes(server: Server, run_id: str) -> dict[int, str]:
    """key -> outcome from the run's ``sync-outcomes-275`` table artifact."""
    (table,) = server.artifacts([run_id], key={"any_": ["sync-outcomes-275"]})
    return {int(row["key"]): row["outcome"] for row in json.loads(table["data"])}


def assert_history(server: Server, run_id: str, data_dir) -> None:
    """The run is a Sync History entry: summary, outcomes, progress and linked reports."""
    keys = {a["key"] for a in server.artifacts([run_id])}
    history = {"sync-request-275", "sync-outcomes-275", "sync-progress-275"}
    reports = {"sync-report-pdf-275", "sync-report-docx-275"}
    assert history | reports <= keys, keys
    # The reports are made when a link is first opened: open each through a report server
    # over the worker's data, as a click in the UI does.
    links = {
        a["key"]: re.search(r"\((https?://[^)]+)\)\s*$", a["data"].strip()).group(1)
        for a in server.artifacts([run_id])
        if a["key"] in reports
    }
    with report_server(data_dir) as base:
        for fmt, magic in (("pdf", b"%PDF"), ("docx", b"PK")):
            link = urlsplit(links[f"sync-report-{fmt}-275"])
            response = httpx.get(f"{base}{link.path}?{link.query}", timeout=60)
            assert response.status_code == 200, response.text
            report = data_dir / "reports" / "sync" / f"{run_id}.{fmt}"
            assert report.read_bytes().startswith(magic), report
            assert response.content == report.read_bytes()


@contextlib.contextmanager
def report_server(data_dir):
    """``selective-sync reports serve``'s server over ``data_dir``, on a free port."""
    from selective_sync.reports.server import make_server
    from selective_sync.settings import Settings

    server = make_server("127.0.0.1", 0, Settings(data_dir=data_dir))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def assert_completed(server: Server, run: dict) -> None:
    assert run["state"]["type"] == "COMPLETED", (
        f"{run['state']}\n{server.logs_of(run['id'])[-3000:]}\n{server.logs()}"
    )


# ---------------------------------------------------------------- deployments


def test_deploy_creates_every_deployment_without_secrets(deployed: Server):
    with deployed.http() as client:
        found = client.post("/deployments/filter", json={}).json()
        flows = {f["id"]: f["name"] for f in client.post("/flows/filter", json={}).json()}
    by_name = {f"{flows[d['flow_id']]}/{d['name']}": d for d in found}
    assert set(by_name) >= DEPLOYMENTS
    for name in DEPLOYMENTS:
        deployment = by_name[name]
        assert deployment["work_pool_name"] == POOL
        assert deployment["enforce_parameter_schema"] is True
        # Module paths, as prefect.yaml explains.
        assert deployment["entrypoint"].startswith("flows."), deployment["entrypoint"]
        # The checkout is resolved by each run (worker environment), not baked in.
        assert deployment["pull_steps"] == [
            {
                "prefect.deployments.steps.set_working_directory": {
                    "directory": "{{ $SELECTIVE_SYNC_CHECKOUT }}"
                }
            }
        ]
        text = json.dumps(deployment).lower()
        assert "password" not in text and "postgresql" not in text and "mysql" not in text
    for name in ("verification-summary/verify-district", "reconcile/reconcile-nightly"):
        (schedule,) = by_name[name]["schedules"]
        assert schedule["active"] and schedule["schedule"]["cron"]
    schema = by_name[SYNC]["parameter_openapi_schema"]
    assert schema["definitions"]["ObjectName"]["enum"] == [
        "PersonIdentity",
        "Enrollment",
        "Graduation",
    ]
    assert schema["properties"]["requested_by"]["description"]
    # Never two reconciliations at once (the deployment's concurrency limit).
    limit = by_name["reconcile/reconcile-nightly"]["global_concurrency_limit"]
    assert limit and limit["limit"] == 1, by_name["reconcile/reconcile-nightly"]


def test_unknown_object_is_refused_when_the_run_is_created(deployed: Server):
    def runs_of_sync() -> int:
        body = {"deployments": {"id": {"any_": [deployed.deployment_id(SYNC)]}}}
        return len(deployed.flow_runs(body))

    before = runs_of_sync()
    response = deployed.create_run(SYNC, {"object": "Bogus", "ids": "1", "requested_by": ADMIN})
    # Prefect 3.9 answers 409 "Error creating flow run: Validation failed for field 'object'".
    assert response.status_code in (409, 422), response.text
    assert "'object'" in response.json()["detail"], response.text
    # The IDs are one text box in the form: the schema takes text (a list is for Python
    # callers such as the reconciliation), and says which field is wrong.
    response = deployed.create_run(
        SYNC, {"object": "PersonIdentity", "ids": [1], "requested_by": ADMIN}
    )
    assert response.status_code == 409, response.text
    assert "'ids'" in response.json()["detail"], response.text
    response = deployed.create_run(
        SYNC, {"object": "PersonIdentity", "ids": "1", "requested_by": ADMIN, "dry_run": "no"}
    )
    assert response.status_code == 409, response.text
    assert "'dry_run'" in response.json()["detail"], response.text
    done = run_cli(
        deployed, SYNC, "-p", "object=Bogus", "-p", "ids=[1]", "-p", f"requested_by={ADMIN}"
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert runs_of_sync() == before


# ---------------------------------------------------------------- runs through the worker


def test_selective_sync_from_cli_and_rest(worker, deployed: Server, demo_data):
    manifest = demo_data.manifest
    enrollments = fixable(manifest, "Enrollment", ["mismatched"])
    persons = fixable(manifest, "PersonIdentity", ["missing_at_state"])
    absent = 999_999_999
    assert enrollments and persons
    assert verify_keys(demo_data.dir, "Enrollment", enrollments).errors == len(enrollments)

    # The CLI, with the IDs as pasted text (commas and spaces).
    pasted = ", ".join(map(str, enrollments))
    done = run_cli(
        deployed,
        SYNC,
        "-p",
        "object=Enrollment",
        "-p",
        f"ids={pasted}",
        "-p",
        f"requested_by={ADMIN}",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cli_run = cli_run_id(done.stdout)

    # REST, with the IDs as text separated by spaces (a JSON list is refused, see above).
    response = deployed.create_run(
        SYNC,
        {
            "object": "PersonIdentity",
            "ids": " ".join(map(str, [*persons, absent])),
            "requested_by": ADMIN,
        },
    )
    assert response.status_code == 201, response.text
    rest_run = response.json()["id"]

    for run_id in (cli_run, rest_run):
        assert_completed(deployed, deployed.wait(run_id))
        assert_history(deployed, run_id, demo_data.dir)

    assert outcomes(deployed, cli_run) == {k: "synced" for k in enrollments}
    got = outcomes(deployed, rest_run)
    assert got.pop(absent) == "not_found"
    assert got == {k: "synced" for k in persons}
    assert verify_keys(demo_data.dir, "Enrollment", enrollments).errors == 0
    assert verify_keys(demo_data.dir, "PersonIdentity", persons).errors == 0


def test_selective_sync_fans_out_on_dask(worker, deployed: Server, demo_data):
    """The same deployment, on a Dask cluster chosen by job variables only."""
    import distributed  # prefect-dask depends on it

    keys = fixable(demo_data.manifest, "Graduation", ["missing_at_state", "mismatched"])
    before = verify_keys(demo_data.dir, "Graduation", keys)
    keys = [k for k in keys if k in set(before.missing_at_state) | set(before.mismatched)]
    assert len(keys) >= 3, before
    env = {
        "PREFECT_API_URL": deployed.api,
        "PREFECT_HOME": str(deployed.home),
        "DO_NOT_TRACK": "1",
        "SELECTIVE_SYNC_DATA_DIR": str(demo_data.dir),
    }
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            dashboard_address=None,
            env=env,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        response = deployed.create_run(
            SYNC,
            {"object": "Graduation", "ids": "\n".join(map(str, keys)), "requested_by": ADMIN},
            job_variables={
                "env": {
                    "SELECTIVE_SYNC_TASK_RUNNER": "dask",
                    "SELECTIVE_SYNC_DASK_ADDRESS": cluster.scheduler_address,
                }
            },
        )
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        assert_completed(deployed, deployed.wait(run_id))
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.task_prefixes)
        )
    # The per-key tasks ran on the cluster, not in the flow run's threads.
    assert "sync_key_task" in prefixes, prefixes
    assert_history(deployed, run_id, demo_data.dir)
    assert outcomes(deployed, run_id) == {k: "synced" for k in keys}
    assert verify_keys(demo_data.dir, "Graduation", keys).errors == 0


def test_reconcile_leaves_every_synced_key_clean(worker, deployed: Server, demo_data):
    max_keys = 10
    names = ("PersonIdentity", "Enrollment", "Graduation")
    before = {name: verify_keys(demo_data.dir, name) for name in names}
    differing = {n: len(v.missing_at_state) + len(v.mismatched) for n, v in before.items()}
    assert any(differing.values()), differing

    response = deployed.create_run(
        "reconcile/reconcile-nightly", {"districts": [275], "max_keys": max_keys}
    )
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    assert_completed(deployed, deployed.wait(run_id, timeout=240))

    # The nightly fans out: its districts in batches, each a reconcile-districts run on the
    # work pool (here one batch of one district).
    (batch_run,) = deployed.flow_runs({"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}})
    assert batch_run["parameters"]["districts"] == [275]
    assert batch_run["deployment_id"] == deployed.deployment_id(
        "reconcile-districts/reconcile-some-districts"
    )
    assert_completed(deployed, batch_run)
    # Its district is a task run, its syncs no flow runs of their own: Sync History
    # entries in the ledger (origin "nightly"), one per object with keys to send.
    assert not deployed.flow_runs(
        {"flow_runs": {"parent_flow_run_id": {"any_": [batch_run["id"]]}}}
    )
    (table,) = deployed.artifacts([batch_run["id"]], key={"any_": ["reconcile-district-275"]})
    assert table["task_run_id"]
    rows = {r["object"]: r for r in json.loads(table["data"])}
    syncs = {name: row["sync_run"] for name, row in rows.items() if row["sync_run"]}
    assert set(syncs) == {n for n in names if differing[n]}
    for name, sync_run in syncs.items():
        request, got = ledger_entry(demo_data.dir, sync_run)
        assert request.requested_by == "scheduled reconciliation" and request.origin == "nightly"
        assert request.check_dependencies and request.status.value == "Complete"
        assert len(request.keys) == min(differing[name], max_keys) == rows[name]["sent"]
        assert set(got) == set(request.keys)
        # No report rendered on the night's path (made when someone asks).
        assert not list((demo_data.dir / "reports" / "sync").glob(f"{sync_run}.*"))
        good = [k for k, o in got.items() if o in SUCCEEDED]
        assert good, got
        after = verify_keys(demo_data.dir, name, good)
        # Verification Summary of the keys it synced: 100%.
        assert after.errors == 0 and after.accuracy == 100.0, after.issues
        # What failed was refused by the state for a reason (an unmapped code).
        refused = demo_data.manifest["will_fail"][name]
        assert {k for k, o in got.items() if o == "failed"} <= set(
            refused["unmapped_code"] + refused["parent_missing"]
        )

    (summary,) = deployed.artifacts([run_id], key={"any_": ["reconcile-summary"]})
    leftover = sum(max(0, d - max_keys) for d in differing.values())
    assert f"left over: **{leftover:,}**" in summary["data"]
    assert f"/runs/task-run/{table['task_run_id']}" in summary["data"]
    # The district's Verification Summary after the syncs is stored (no summary run): it
    # is what verifying every object now finds.
    stored = stored_summary(demo_data.dir)
    for name in names:
        now = verify_keys(demo_data.dir, name)
        assert (stored[name]["errors"], stored[name]["distinct"]) == (now.errors, now.distinct)


def ledger_entry(data_dir, run_id: str):
    """The request ``run_id`` in the demo's ledger, and its keys' outcomes."""
    from selective_sync.db import make_engine
    from selective_sync.ledger import read_keys, read_request
    from selective_sync.settings import sqlite_url

    engine = make_engine(sqlite_url(data_dir / "state.db"))
    try:
        request = read_request(engine, run_id)
        return request, {
            k.key: k.outcome for k in read_keys(engine, run_id) if k.object == request.object
        }
    finally:
        engine.dispose()


def stored_summary(data_dir) -> dict[str, dict]:
    """The demo district's current stored Verification Summary rows, by object."""
    from selective_sync.db import make_engine
    from selective_sync.settings import sqlite_url
    from selective_sync.verification.records import current_rows

    engine = make_engine(sqlite_url(data_dir / "state.db"))
    try:
        return {r["object"]: r for r in current_rows(engine, [275])[275]}
    finally:
        engine.dispose()
