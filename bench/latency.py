"""What a small request costs: a 1-key sync from the form or the API, and the CLI.

    .venv/bin/python bench/latency.py [--quick] [--repeats 5] [--modes served,worker]
        [--burst 100] [--calls] [--no-cli] [--no-form] [--env NAME=VALUE ...]
        [--out DIR] [--keep]

The form/API path, over a real Prefect server on loopback (its own PREFECT_HOME), in each
mode (one row each):

- ``served``: as ``selective-sync ui`` runs it: its Prefect server
  (``python -m flows.prefect_server``) and ``python -m flows.serve``, started with the
  command lines and environment of ``selective_sync/cli/ui.py``;
- ``worker``: as in production (the guide's Operating page): the tool's Prefect server
  without sign-in (``python -m flows.prefect_server``), ``deployments/setup.sh`` (the
  process work pool, every deployment of prefect.yaml) and one ``deployments/worker.sh``.

In each mode the bench sends ``POST /api/deployments/{id}/create_flow_run`` (what the UI's
Submit sends) for a 1-key and a 10-key selective sync and for an empty flow served (or
deployed) the same way beside them (``bench/latency_flow.py``: Prefect's floor), one run
at a time, interleaved, ``--repeats`` of each after one warm-up of each, and reads each
run's state history: Scheduled -> Pending is waiting for a poll, Pending -> Running the
process start, Running -> final the flow body. Every sync must end Completed with all
its records succeeded; a create_flow_run answered other than 201 is counted and shown.
Printed: median (min-max) seconds per phase, and the ratios against the targets of issue
#24: a 1-key sync's final state <= 3 s and <= 1.5x the empty flow, its body <= 1 s, a
10-key body <= 1.5 s. Then (served) a 1-key sync's PDF and DOCX links opened twice each
through the report server: the first request renders, the second gets the kept file.

``--burst N`` then sends N 1-key create_flow_run back to back to the served mode's server
(the tool's own, on SQLite) with no retry, as N clicks would: every one must be answered
201 (no 503), every run must exist, and all must complete. ``--calls`` counts the REST
calls (by path), events and task runs of one 1-key sync called in a child process against
the served server (an httpx hook; a served run adds the engine's own few calls).

The CLI on the embedded default (no PREFECT_API_URL, its own PREFECT_HOME): ``--help``,
``history list``, ``summary`` (stored results), ``find`` and ``sync`` of 1 key, each run
as a subprocess, wall seconds and CPU seconds (rusage of the children: the command and
every process it waited for), median of 3 (1 with ``--quick``); the first sync and the
stored summary's ``summary --reverify`` are set-up, timed apart.

A new mode (e.g. the served deployments reached through the sign-in proxy) is one more
entry in MODES: a function that starts what it needs with the bench's Procs and returns
a Target (an httpx client that reaches the API the way a user's browser would, and the
deployments' ids); the measurements and the table take it from there.

Everything runs under ``--out`` (default: a temporary directory, removed unless
``--keep``), figures also in ``latency.json`` there; every process started is stopped at
the end, also on Ctrl-C. Figures vary on a shared machine: compare ratios within one run.
``--env NAME=VALUE`` sets a variable in every process started, to try a lever (e.g.
``PREFECT_SERVER_LOG_RETRYABLE_ERRORS=true`` to see the server's busy database errors).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
CLI = str(BIN / "selective-sync")
ADMIN = "bench-admin"
OBJECT = "PersonIdentity"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
EMPTY_DEPLOYMENT = {
    "name": "empty",
    "entrypoint": "bench.latency_flow:empty",
    "description": "bench/latency.py: an empty flow, Prefect's floor.",
    "enforce_parameter_schema": True,
}
# Targets of issue #24 (seconds, or a ratio).
TARGET_TOTAL_1 = 3.0
TARGET_VS_EMPTY = 1.5
TARGET_BODY_1 = 1.0
TARGET_BODY_10 = 1.5
TARGET_CLI = 1.0
TARGET_CLI_SYNC = 2.0


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environ() -> dict[str, str]:
    """This environment without any Prefect or selective-sync setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SELECTIVE_SYNC_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    return env


class Procs:
    """Processes this bench started, each in its own process group, stopped by group."""

    def __init__(self, logdir: Path):
        self.logdir, self.running = logdir, []

    def start(self, name: str, args: list[str], env: dict, **kw) -> subprocess.Popen:
        handle = (self.logdir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                args,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kw,
            )
        finally:
            handle.close()
        self.running.append(proc)
        return proc

    def log_of(self, name: str) -> Path:
        return self.logdir / f"{name}.log"

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
        # Flow-run processes and uvicorn may outlive their leader: the whole group goes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def wait_until(what: str, ready: Callable[[], bool], timeout: float, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{what}: a process exited (code {proc.returncode})")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.3)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------- data


def make_template(out: Path, persons: int) -> Path:
    from selective_sync.demo import generate_demo

    template = out / "template"
    if not (template / "manifest.json").exists():
        log(f"generating the demo ({persons:,} persons)")
        generate_demo(template, persons=persons, seed=7)
    return template


def data_copy(template: Path, directory: Path) -> Path:
    """A copy of the demo with the bench's admin (every right)."""
    from selective_sync.rights import RightsStore
    from selective_sync.settings import sqlite_url

    shutil.copytree(template, directory)
    with RightsStore(sqlite_url(directory / "rights.db"), create_missing=True) as store:
        store.bootstrap_admin(ADMIN)
    return directory


class Keys:
    """Person keys handed out once each: drifted ones first (their sync writes)."""

    def __init__(self, data: Path):
        manifest = json.loads((data / "manifest.json").read_text())
        refused = {k for keys in manifest["will_fail"][OBJECT].values() for k in keys}
        drifted = manifest[OBJECT]["mismatched"] + manifest[OBJECT]["missing_at_state"]
        with contextlib.closing(sqlite3.connect(data / "district.db")) as conn:
            every = [row[0] for row in conn.execute("SELECT person_id FROM person ORDER BY 1")]
        order = [k for k in drifted if k not in refused]
        order += [k for k in every if k not in set(order) and k not in refused]
        self.keys, self.next = order, 0

    def take(self, count: int) -> list[int]:
        taken = [self.keys[(self.next + i) % len(self.keys)] for i in range(count)]
        self.next += count
        return taken


def deployments_file(out: Path) -> Path:
    """prefect.yaml plus the empty flow's deployment (same pool, same pull step)."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pool = spec["deployments"][0]["work_pool"]
    spec["deployments"].append({**EMPTY_DEPLOYMENT, "work_pool": pool})
    spec.pop("definitions", None)
    path = out / "deployments.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ---------------------------------------------------------------- modes


@dataclass
class Target:
    """What a mode gives the measurements: how create_flow_run reaches the API (as the
    user's browser reaches it) and the deployments to run."""

    mode: str
    api: httpx.Client
    deployments: dict[str, str]  # "sync" / "empty" -> deployment id
    data: Path
    server_log: Path
    env: dict[str, str] = field(default_factory=dict)  # a client process's environment
    reports_url: str | None = None  # where the runs' report links point


@dataclass
class Context:
    out: Path
    template: Path
    deployments_yaml: Path
    procs: Procs
    extra_env: dict[str, str]


def start_server(ctx: Context, name: str, args: list[str], port: int, env: dict) -> Path:
    """A Prefect server (``args``) on ``port``, healthy; the path of its log."""
    proc = ctx.procs.start(f"{name}-server", args, env, cwd=ROOT)
    health = f"http://127.0.0.1:{port}/api/health"
    wait_until(f"the {name} server", lambda: answers(health), 180, [proc])
    return ctx.procs.log_of(f"{name}-server")


def deployment_ids(api: httpx.Client, wanted: int, timeout: float, procs) -> dict[str, str]:
    def registered() -> bool:
        response = api.post("/deployments/filter", json={})
        return response.status_code == 200 and len(response.json()) >= wanted

    wait_until("the deployments", registered, timeout, procs)
    ids = {}
    for name, path in (("sync", "selective-sync/sync-records"), ("empty", "bench-empty/empty")):
        response = api.get(f"/deployments/name/{path}")
        response.raise_for_status()
        ids[name] = response.json()["id"]
    return ids


def served(ctx: Context) -> Target:
    """The server and the served deployments as ``selective-sync ui`` starts them (its
    command lines and environment: selective_sync/cli/ui.py)."""
    from selective_sync.cli.ui import child_env, serve_args, server_args

    data = data_copy(ctx.template, ctx.out / "served" / "data")
    port, reports_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = child_env(base, f"http://127.0.0.1:{reports_port}")
    # ui.py keeps Prefect's home under the data directory.
    env.update(PREFECT_HOME=str(data / "prefect"), SELECTIVE_SYNC_DATA_DIR=str(data))
    env.update(ctx.extra_env)
    (data / "prefect").mkdir()
    server_log = start_server(ctx, "served", server_args("127.0.0.1", port), port, env)
    serve = ctx.procs.start(
        "served-serve", [*serve_args(), "--deployments", str(ctx.deployments_yaml)], env, cwd=ROOT
    )
    api = httpx.Client(base_url=f"{base}/api", timeout=60)
    wanted = len(yaml.safe_load(ctx.deployments_yaml.read_text())["deployments"])
    ids = deployment_ids(api, wanted, 240, [serve])
    return Target("served", api, ids, data, server_log, env, f"http://127.0.0.1:{reports_port}")


def worker(ctx: Context) -> Target:
    """A process work pool and a worker as in production (setup.sh, worker.sh)."""
    data = data_copy(ctx.template, ctx.out / "worker" / "data")
    home = ctx.out / "worker" / "prefect"
    home.mkdir(parents=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_environ()
    env.update(
        PREFECT_API_URL=f"{base}/api",
        PREFECT_HOME=str(home),
        SELECTIVE_SYNC_DATA_DIR=str(data),
        PREFECT=PREFECT,
        PYTHON=sys.executable,
        **ctx.extra_env,
    )
    # The server production runs (Prefect's app, SQLite's busy answers retried); plain
    # `prefect server start` answered 503 to several of the timings' create_flow_run.
    from selective_sync.cli.ui import server_args

    server_log = start_server(ctx, "worker", server_args("127.0.0.1", port), port, env)
    for args in (
        ["bash", str(ROOT / "deployments" / "setup.sh")],
        [
            PREFECT,
            "--no-prompt",
            "deploy",
            "--prefect-file",
            str(ctx.deployments_yaml),
            "--name",
            "empty",
        ],
    ):
        done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise SystemExit(
                f"{' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
            )
    proc = ctx.procs.start(
        "worker-worker", ["bash", str(ROOT / "deployments" / "worker.sh"), "--name", "bench"], env
    )
    api = httpx.Client(base_url=f"{base}/api", timeout=60)
    wanted = len(yaml.safe_load(ctx.deployments_yaml.read_text())["deployments"])
    ids = deployment_ids(api, wanted, 60, [proc])
    wait_until(
        "the worker",
        lambda: bool(api.post("/work_pools/selective-sync/workers/filter", json={}).json()),
        120,
        [proc],
    )
    return Target("worker", api, ids, data, server_log, env)


# One row per mode; a mode through the sign-in proxy is one more entry here.
MODES: dict[str, Callable[[Context], Target]] = {"served": served, "worker": worker}


# ---------------------------------------------------------------- the form/API path


@dataclass
class Timing:
    flow: str
    run_id: str
    state: str
    total: float
    poll: float
    start: float
    body: float
    message: str = ""


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def create_run(api: httpx.Client, deployment: str, parameters: dict) -> httpx.Response:
    """The request the UI's Submit sends (no retry: a browser does not retry either)."""
    return api.post(f"/deployments/{deployment}/create_flow_run", json={"parameters": parameters})


def wait_final(api: httpx.Client, run_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/flow_runs/{run_id}")
        if response.status_code == 200:
            run = response.json()
            if (run.get("state") or {}).get("type") in TERMINAL:
                return run
        if time.monotonic() > deadline:
            raise SystemExit(f"flow run {run_id} not finished after {timeout:.0f} s")
        # The times are the server's (the run's state history): polling less often only
        # costs the bench a moment, and the server less load.
        time.sleep(0.2)


def timing(api: httpx.Client, flow: str, run: dict, posted: datetime) -> Timing:
    """The run's phases from its state history (server timestamps, same machine)."""
    states = api.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
    states.sort(key=lambda s: s["timestamp"])

    def first(kind: str) -> datetime:
        return min(parse_time(s["timestamp"]) for s in states if s["type"] == kind)

    final = parse_time(states[-1]["timestamp"])
    pending, running = first("PENDING"), first("RUNNING")
    return Timing(
        flow,
        run["id"],
        run["state"]["type"],
        (final - posted).total_seconds(),
        (pending - posted).total_seconds(),
        (running - pending).total_seconds(),
        (final - running).total_seconds(),
        run["state"].get("name") or "",
    )


REFUSALS: Counter[str] = Counter()  # create_flow_run answers other than 201, by mode


def one_run(target: Target, flow: str, keys: Keys) -> Timing:
    if flow == "empty":
        deployment, parameters = target.deployments["empty"], {}
    else:
        count = int(flow.split("-")[1])
        ids = ", ".join(str(k) for k in keys.take(count))  # the form's one text box
        deployment = target.deployments["sync"]
        parameters = {"object": OBJECT, "ids": ids, "requested_by": ADMIN}
    for _attempt in range(3):
        posted = datetime.now(UTC)
        response = create_run(target.api, deployment, parameters)
        if response.status_code == 201:
            break
        # Counted and reported: a user's Submit would have shown this error.
        REFUSALS[f"{target.mode} {response.status_code}"] += 1
        log(f"{target.mode}: create_flow_run answered {response.status_code}: {response.text}")
        time.sleep(1)
    else:
        raise SystemExit(f"create_flow_run answered {response.status_code} three times")
    run = wait_final(target.api, response.json()["id"])
    found = timing(target.api, flow, run, posted)
    if found.state != "COMPLETED":
        raise SystemExit(f"{flow} run {found.run_id} ended {found.state}: {run['state']}")
    if flow != "empty":
        count = int(flow.split("-")[1])
        if f"Records {count}/{count}" not in found.message:
            raise SystemExit(f"{flow} run {found.run_id} ended {found.message!r}")
    return found


FLOWS = ("empty", "sync-1", "sync-10")


def form_path(target: Target, repeats: int) -> list[Timing]:
    keys = Keys(target.data)
    for flow in FLOWS:  # warm-up: first imports, caches, connections
        one_run(target, flow, keys)
    timings = []
    for i in range(repeats):
        for flow in FLOWS:
            timings.append(one_run(target, flow, keys))
        log(f"{target.mode}: round {i + 1}/{repeats} done")
    return timings


# ---------------------------------------------------------------- reports on demand


def report_links(api: httpx.Client, run_id: str) -> dict[str, str]:
    """The run's report links: format -> URL (a link artifact's data is ``[text](url)``)."""
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "type": {"any_": ["markdown"]}}}
    found = {}
    for artifact in api.post("/artifacts/filter", json=body).json():
        key = artifact.get("key") or ""
        if key.startswith("sync-report-"):
            found[key.split("-")[2]] = artifact["data"].rsplit("(", 1)[1].rstrip(")")
    return found


def open_reports(ctx: Context, target: Target, run_id: str) -> dict:
    """Open a finished sync's PDF and DOCX links twice each through the report server, as
    a person's clicks do: the first request renders, the second gets the kept file."""
    port = int(target.reports_url.rsplit(":", 1)[1])
    stored = target.data / "reports" / "sync"
    if list(stored.glob(f"{run_id}.*")):
        raise SystemExit(f"run {run_id} has report files before anyone asked for them")
    proc = ctx.procs.start(
        "reports-serve", [CLI, "reports", "serve", "--port", str(port)], target.env, cwd=ROOT
    )
    wait_until("the report server", lambda: _listening(port), 60, [proc])
    links = report_links(target.api, run_id)
    timings = {}
    try:
        for fmt in ("pdf", "docx"):
            for attempt in ("first", "again"):
                t0 = time.monotonic()
                response = httpx.get(links[fmt], timeout=120)
                timings[f"{'' if fmt == 'pdf' else 'docx_'}{attempt}_s"] = time.monotonic() - t0
                if response.status_code != 200 or response.content[:2] not in (b"%P", b"PK"):
                    raise SystemExit(f"the {fmt} link answered {response.status_code}")
    finally:
        ctx.procs.stop(proc)
    return timings


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- the burst


def burst(target: Target, count: int) -> dict:
    """``count`` 1-key create_flow_run back to back, no retry; then wait for every run."""
    keys = Keys(target.data)
    statuses: Counter[int | str] = Counter()
    refused: list[str] = []
    created = []
    # A client of its own, as a person's browser session: no connection left idle by the
    # measurements before (a server closes those after PREFECT_SERVER_API_KEEPALIVE_TIMEOUT).
    t0 = time.monotonic()
    with httpx.Client(base_url=target.api.base_url, timeout=60) as api:
        for number in range(1, count + 1):
            params = {"object": OBJECT, "ids": str(keys.take(1)[0]), "requested_by": ADMIN}
            try:
                response = create_run(api, target.deployments["sync"], params)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                refused.append(f"#{number} {type(exc).__name__}: {exc}")
                continue
            statuses[response.status_code] += 1
            if response.status_code == 201:
                created.append(response.json()["id"])
            else:
                refused.append(f"#{number} {response.status_code}: {response.text[:200]}")
    posted_s = time.monotonic() - t0
    finals: Counter[str] = Counter()
    lost = 0
    for run_id in created:
        if target.api.get(f"/flow_runs/{run_id}").status_code == 404:
            lost += 1
            continue
        finals[wait_final(target.api, run_id, timeout=900)["state"]["type"]] += 1
    return {
        "requests": count,
        "statuses": dict(statuses),
        "refused": refused,
        "created": len(created),
        "lost": lost,
        "final_states": dict(finals),
        "posting_s": round(posted_s, 1),
        "all_final_s": round(time.monotonic() - t0, 1),
    }


def server_log_problems(path: Path) -> dict[str, int]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return {
        # Logged only with PREFECT_SERVER_LOG_RETRYABLE_ERRORS=true (--env).
        "requests refused busy": text.count("Encountered retryable exception"),
        # Mostly Prefect's own background services (late runs, docket tasks).
        "'database is locked' lines": text.count("database is locked"),
        "500 errors": text.count("Encountered exception in request"),
    }


# ---------------------------------------------------------------- API calls of one run

CALLS_CHILD = r"""
import collections, json, sys
import httpx
counts = collections.Counter()
def counted(send):
    def wrapper(self, request, *args, **kwargs):
        path = request.url.path.split("/api/", 1)[-1]
        parts = ["{id}" if len(p) == 36 and p.count("-") == 4 else p for p in path.split("/")]
        counts[request.method + " /" + "/".join(parts)] += 1
        return send(self, request, *args, **kwargs)
    return wrapper
httpx.Client.send = counted(httpx.Client.send)
httpx.AsyncClient.send = counted(httpx.AsyncClient.send)
from prefect.events import clients
events = collections.Counter()
emit = clients.PrefectEventsClient._emit
async def counted_emit(self, event):
    events[event.event] += 1
    return await emit(self, event)
clients.PrefectEventsClient._emit = counted_emit
from flows.sync_request import selective_sync
state = selective_sync(object=sys.argv[1], ids=sys.argv[2], requested_by=sys.argv[3],
                       return_state=True)
print(json.dumps({"run_id": str(state.state_details.flow_run_id), "state": state.name,
                  "rest": dict(counts), "events": dict(events)}))
"""


def api_calls(target: Target, keys: Keys) -> dict:
    """REST calls and events of one 1-key sync called against the served server."""
    done = subprocess.run(
        [sys.executable, "-c", CALLS_CHILD, OBJECT, str(keys.take(1)[0]), ADMIN],
        env=target.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"the API-call count failed:\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    body = {"task_runs": {}, "flow_runs": {"id": {"any_": [found["run_id"]]}}}
    found["task_runs"] = target.api.post("/task_runs/count", json=body).json()
    return found


# ---------------------------------------------------------------- the CLI


@dataclass
class CliTiming:
    command: str
    wall: list[float]
    cpu: list[float]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], env: dict) -> tuple[float, float]:
    cpu0, t0 = children_cpu(), time.monotonic()
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[1:])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, cpu


def cli(ctx: Context, repeats: int) -> tuple[list[CliTiming], dict]:
    data = data_copy(ctx.template, ctx.out / "cli" / "data")
    env = clean_environ()
    env.update(
        PREFECT_HOME=str(ctx.out / "cli" / "prefect"),
        SELECTIVE_SYNC_DATA_DIR=str(data),
        **ctx.extra_env,
    )
    keys = Keys(data)
    user = ["--user", ADMIN]
    first = {}
    # Set-up, timed apart: the first sync (Prefect's database made) and a summary stored.
    first["first sync"] = timed([CLI, "sync", OBJECT, str(keys.take(1)[0]), *user], env)
    first["summary --reverify"] = timed([CLI, "summary", "--reverify", *user], env)
    commands: dict[str, Callable[[], list[str]]] = {
        "--help": lambda: [CLI, "--help"],
        "history list": lambda: [CLI, "history", "list", *user],
        "summary": lambda: [CLI, "summary", *user],
        "find --last B": lambda: [CLI, "find", "--last", "B", *user],
        "sync 1 key": lambda: [CLI, "sync", OBJECT, str(keys.take(1)[0]), *user],
    }
    timings = {name: CliTiming(name, [], []) for name in commands}
    for _ in range(repeats):
        for name, args in commands.items():
            wall, cpu = timed(args(), env)
            timings[name].wall.append(wall)
            timings[name].cpu.append(cpu)
    return list(timings.values()), first


# ---------------------------------------------------------------- the report


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    """``median (min-max)``, seconds."""
    return f"{med(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def ratio_line(what: str, value: float, target: float, unit: str = "s") -> str:
    verdict = "ok" if value <= target else "MISSED"
    shown, goal = (
        (f"{value:.2f} s", f"<= {target:g} s")
        if unit
        else (
            f"{value:.2f}x",
            f"<= {target:g}x",
        )
    )
    return f"  {what:<36}{shown:>9}{goal:>11}{value / target:>8.2f}  {verdict}"


def phase(timings: list[Timing], flow: str, name: str) -> list[float]:
    return [getattr(t, name) for t in timings if t.flow == flow]


def print_form(results: dict[str, list[Timing]], repeats: int) -> list[str]:
    lines = [
        "",
        f"Form/API: create_flow_run -> final state, seconds, median (min-max) of {repeats}",
        f"{'mode':<8}{'flow':<9}{'total':<20}{'poll':>6}{'start':>7}  {'body':<17}",
    ]
    for mode, timings in results.items():
        for flow in FLOWS:
            lines.append(
                f"{mode:<8}{flow:<9}{spread(phase(timings, flow, 'total')):<20}"
                f"{med(phase(timings, flow, 'poll')):>6.2f}"
                f"{med(phase(timings, flow, 'start')):>7.2f}"
                f"  {spread(phase(timings, flow, 'body')):<17}"
            )
    lines += [
        "  poll: Scheduled->Pending (waiting for a poll); start: Pending->Running",
        "  (process start); body: Running->final state (the flow body)",
        "",
        f"  {'target (issue #24)':<36}{'value':>9}{'target':>11}{'ratio':>8}",
    ]
    for mode, timings in results.items():
        total_1 = med(phase(timings, "sync-1", "total"))
        empty = med(phase(timings, "empty", "total"))
        lines += [
            ratio_line(f"{mode}: 1 key, final state", total_1, TARGET_TOTAL_1),
            ratio_line(f"{mode}: 1 key / the empty flow", total_1 / empty, TARGET_VS_EMPTY, ""),
            ratio_line(
                f"{mode}: 1 key, body", med(phase(timings, "sync-1", "body")), TARGET_BODY_1
            ),
            ratio_line(
                f"{mode}: 10 keys, body", med(phase(timings, "sync-10", "body")), TARGET_BODY_10
            ),
        ]
    return lines


def print_cli(timings: list[CliTiming], first: dict, repeats: int) -> list[str]:
    lines = [
        "",
        f"CLI on the embedded default: seconds, median (min-max) of {repeats}",
        f"{'command':<15}{'wall':<21}{'CPU (children)':<21}{'target':>7}{'ratio':>7}",
    ]
    for t in timings:
        target = TARGET_CLI_SYNC if t.command.startswith("sync") else TARGET_CLI
        lines.append(
            f"{t.command:<15}{spread(t.wall):<21}{spread(t.cpu):<21}"
            f"{'<= ' + format(target, 'g'):>7}{med(t.wall) / target:>7.2f}"
        )
    lines.append(f"  targets: wall; sync 1 key also <= {TARGET_CLI_SYNC:g} CPU-s")
    for name, (wall, cpu) in first.items():
        lines.append(f"  set-up, timed apart: {name}: {wall:.1f} s wall, {cpu:.1f} CPU-s")
    return lines


def print_reports(opened: dict) -> list[str]:
    return [
        "",
        f"A 1-key sync's PDF link (report server): first open {opened['first_s']:.2f} s "
        f"(renders), again {opened['again_s']:.2f} s",
        f"  (the DOCX: {opened['docx_first_s']:.2f} s, then {opened['docx_again_s']:.2f} s); "
        "no report file existed before",
    ]


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5.")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated modes.")
    parser.add_argument("--burst", type=int, default=0, help="N back-to-back 1-key requests.")
    parser.add_argument("--calls", action="store_true", help="Count one sync's API calls.")
    parser.add_argument("--no-cli", action="store_true", help="Skip the CLI commands.")
    parser.add_argument("--no-form", action="store_true", help="Skip the form/API timings.")
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Set in every process started (to try a lever).",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="Keep --out afterwards.")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}: choose from {', '.join(MODES)}")
    extra_env = dict(item.split("=", 1) for item in args.env)

    out = args.out or Path(tempfile.mkdtemp(prefix="latency-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    # The bench's own environment must not leak a Prefect API or settings into children.
    clean = clean_environ()
    os.environ.clear()
    os.environ.update(clean)
    procs = Procs(out / "logs")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lines: list[str] = []
    figures: dict = {"repeats": repeats, "env": extra_env}
    try:
        ctx = Context(
            out, make_template(out, args.persons), deployments_file(out), procs, extra_env
        )
        form: dict[str, list[Timing]] = {}
        for mode in modes:
            log(f"starting mode {mode}")
            target = MODES[mode](ctx)
            if not args.no_form:
                form[mode] = form_path(target, repeats)
            if mode == "served" and not args.no_form:
                last = next(t for t in reversed(form[mode]) if t.flow == "sync-1")
                figures["reports"] = open_reports(ctx, target, last.run_id)
            if mode == "served" and args.calls:
                figures["calls"] = api_calls(target, Keys(target.data))
            if mode == "served" and args.burst:
                log(f"burst of {args.burst} create_flow_run")
                figures["burst"] = burst(target, args.burst)
            figures.setdefault("server_log", {})[mode] = server_log_problems(target.server_log)
            target.api.close()
            procs.stop_all()
        if form:
            lines += print_form(form, repeats)
            figures["form"] = {m: [t.__dict__ for t in ts] for m, ts in form.items()}
        if "reports" in figures:
            lines += print_reports(figures["reports"])
        if not args.no_cli:
            log("CLI commands on the embedded default")
            cli_timings, first = cli(ctx, max(1, repeats // 2 + 1) if not args.quick else 1)
            lines += print_cli(cli_timings, first, len(cli_timings[0].wall))
            figures["cli"] = [t.__dict__ for t in cli_timings]
        if "calls" in figures:
            calls = figures["calls"]
            rest = sum(calls["rest"].values())
            lines += [
                "",
                f"One 1-key sync: {rest} REST calls, {sum(calls['events'].values())} "
                f"events, {calls['task_runs']} task runs",
            ]
            for path, n in sorted(calls["rest"].items(), key=lambda kv: -kv[1]):
                lines.append(f"  {n:4d}  {path[:72]}")
        if "burst" in figures:
            b = figures["burst"]
            ok = (
                b["statuses"].get(201, 0) == b["requests"]
                and not b["lost"]
                and b["final_states"].get("COMPLETED", 0) == b["requests"]
            )
            lines += [
                "",
                f"Burst: {b['requests']} back-to-back 1-key create_flow_run (served, no retry)",
                f"  answered: {b['statuses']}; lost: {b['lost']}; final: {b['final_states']}",
                *(f"  {line[:76]}" for line in b["refused"][:5]),
                f"  posted in {b['posting_s']} s, all final after {b['all_final_s']} s: "
                + ("ok" if ok else "FAILED"),
            ]
        if REFUSALS:
            lines.append(f"create_flow_run refused during the timings: {dict(REFUSALS)}")
        for mode, problems in figures.get("server_log", {}).items():
            shown = ", ".join(f"{k}: {v}" for k, v in problems.items())
            lines.append(f"Server log ({mode}): {shown}")
    finally:
        procs.stop_all()
    print("\n".join(lines))
    (out / "latency.json").write_text(json.dumps(figures, indent=1, default=str))
    log(f"figures in {out / 'latency.json'}")
    if not args.keep and args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
