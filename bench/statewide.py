"""A state-wide night: many districts reconciled by the nightly over the work pool.

    .venv/bin/python bench/statewide.py [--districts 100] [--persons 2000] [--workers 1,2]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432] [--out DIR] [--keep]
        [--history-entries 1000] [--skip-at-scale]

Quick runs: ``--districts 10 --workers 1,2 --skip-at-scale`` (about 5 minutes idle).

Builds, with real parts only:

- N districts, each its own SQLite database made by the demo generator (seed 1000+i, so
  each district has its own seeded drift), listed in a districts file (YAML);
- one state database on PostgreSQL holding every district's rows (``init-db`` registers
  the districts there) and the rights (the reconciliation requester holds W);
- a real ``prefect server`` on its own PostgreSQL database, the work pool and every
  deployment (``deployments/setup.sh``), and W process workers (``deployments/worker.sh``).

One district's URL points at a file that does not exist, on purpose. For each W in
``--workers`` it regenerates the drift, sets the ``reconcile-districts`` deployment's
concurrency limit to W, starts W workers, runs ``reconcile/reconcile-nightly`` for every
district (the districts go to the work pool in batches, each a ``reconcile-districts`` run
whose districts are task runs) and prints: wall time, per-district median/max (the
districts' task runs), keys sent/succeeded/failed, the drift left after (verified
straight from the databases: must be only the seeded will-fail keys and the keys missing
at the district, which a sync never touches), the Sync History entries the night wrote
(the ledger's requests of origin ``nightly``, and their key rows), the Prefect objects
created (flow runs, task runs, artifacts), the Prefect database's growth and the CPU
seconds each role used (the batch runs' processes, the parent run, workers, the Prefect
server, each PostgreSQL database's backends), with their sum per district; then the
extrapolation to a 180-district, 700,000-student state for one night and for a year, and
the floor the CPU alone sets on 2 cores.

Afterwards (item 5 of issue 17; ``--skip-at-scale`` leaves it out): the state's
Verification Summary over ``--summary-districts`` districts (``summary --all-districts``,
stored results: the nights' own, and copies of one under the other numbers, in the state
database) and ``history list`` of one district with ``--history-entries`` entries (seeded
in the ledger as the flow writes them), each timed in-process (the answer) and as the
whole command. Drops its databases at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
CLI = str(BIN / "selective-sync")
ADMIN = "bench-admin"
FIRST_NUMBER = 1001
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TARGET_DISTRICTS, TARGET_STUDENTS = 180, 700_000
# The deployment the nightly's runs on the work pool belong to ("--baseline": the one a
# checkout from before #24's nightly had, one run per district, for a same-run baseline).
DISTRICTS_DEPLOYMENT = "reconcile-districts/reconcile-some-districts"
BASELINE_DEPLOYMENT = "reconcile-district/reconcile-one-district"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------- databases


def pg_admin(base: str, sql: str) -> None:
    import psycopg

    url = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{url}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def pg_size(base: str, database: str) -> int:
    import psycopg

    url = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(f"{url}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT pg_database_size(%s)", (database,)).fetchone()[0]


def districts_of(count: int) -> list[tuple[int, str]]:
    return [(FIRST_NUMBER + i, f"DISTRICT {i + 1:03d}") for i in range(count)]


def generate(out: Path, districts, persons: int, state_url: str) -> dict[int, dict]:
    """Every district's demo (its own SQLite file, its rows at the state); manifests."""
    from selective_sync.demo import generate_demo

    manifests = {}
    for number, name in districts:
        manifest = generate_demo(
            out / f"d{number}",
            persons=persons,
            seed=number,
            state_url=state_url,
            district_number=number,
            district_name=name,
        )
        manifests[number] = json.loads(manifest.to_json())
    return manifests


def write_districts_file(out: Path, districts, broken: int) -> Path:
    lines = ["# The bench's districts; one URL is broken on purpose.", "districts:"]
    for number, name in districts:
        db = out / f"d{number}" / ("missing/district.db" if number == broken else "district.db")
        lines += [f"  - number: {number}", f"    name: {name}", f"    url: sqlite:///{db}"]
    path = out / "districts.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Procs:
    """Processes this bench started, each in its own process group, stopped by group."""

    def __init__(self, logdir: Path):
        self.logdir, self.running = logdir, []

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        handle = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


class Api:
    def __init__(self, url: str):
        self.client = httpx.Client(base_url=url, timeout=60)

    def post(self, path: str, body: dict) -> object:
        for attempt in range(6):
            response = self.client.post(path, json=body)
            if response.status_code not in (429, 502, 503):
                break
            time.sleep(0.5 * 2**attempt)
        response.raise_for_status()
        return response.json() if response.content else None

    def get(self, path: str) -> object:
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def count(self, kind: str) -> int:
        return int(self.post(f"/{kind}/count", {}))

    def counts(self) -> dict[str, int]:
        return {k: self.count(k) for k in ("flow_runs", "task_runs", "artifacts")}

    def filter_all(self, kind: str, body: dict) -> list[dict]:
        found, offset = [], 0
        while True:
            page = self.post(f"/{kind}/filter", {**body, "limit": 200, "offset": offset})
            found += page
            if len(page) < 200:
                return found
            offset += 200


# ---------------------------------------------------------------- one night


class CpuSampler:
    """CPU seconds by role over a night, read from /proc every half second: the Prefect
    server, the workers, the parent's and the batches' flow-run processes (and the
    supervisor a process worker starts around each), and the PostgreSQL backends of the
    Prefect database and of the state database.

    Only this bench's processes count (the machine may be shared): those whose environment
    holds this night's ``PREFECT_API_URL``, and the backends of this bench's databases. A
    sampled process's last half second may be missed; the workers' reaped children are
    counted exactly (``cutime``: every flow-run process and its supervisor, once ended),
    and that is the figure the totals use."""

    def __init__(self, prefect_db: str, state_db: str, api_url: str):
        import threading

        self.dbs = {prefect_db: "pg_prefect", state_db: "pg_state"}
        self.marker = f"PREFECT_API_URL={api_url}".encode()
        self.seen: dict[int, tuple[str, float, float]] = {}
        self.ignored: set[int] = set()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self.base = dict(self.seen)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # The last runs' processes end (and are reaped by their workers) just after the
        # night's final state.
        time.sleep(3)
        self.stop_event.set()
        self.thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self.stop_event.wait(0.5):
            self._sample()

    def _role(self, pid: int, cmd: str) -> str | None:
        if cmd.startswith("postgres:"):
            return next((r for db, r in self.dbs.items() if f" {db} " in cmd), None)
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        if self.marker not in env:
            return None  # another bench's or agent's process
        if "prefect.engine" in cmd or "_workspace_" in cmd:
            # The worker's supervisor becomes the run's engine (one process, exec'd); the
            # run's id is in its environment once it is the engine.
            run = next((e for e in env if e.startswith(b"PREFECT__FLOW_RUN_ID=")), b"")
            return "flow:" + run.split(b"=", 1)[1].decode() if run else "flow:?"
        if "worker start" in cmd:
            return "workers"
        if "uvicorn" in cmd or "prefect server" in cmd or "prefect.server" in cmd:
            return "server"
        return None

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in self.ignored:
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / self.tick
            children = (int(fields[13]) + int(fields[14])) / self.tick
            known = self.seen.get(pid)
            role = known[0] if known and known[0] != "flow:?" else self._role(pid, cmd)
            if role:
                self.seen[pid] = (role, cpu, children)
            elif cmd:  # a process with no command line yet may still exec into one of ours
                self.ignored.add(pid)

    def by_role(self, parent_run_id: str) -> dict[str, float]:
        """CPU seconds used during the night, by role (the batches' runs summed); the
        ``runs_reaped`` figure is every ended run process with its supervisor, exactly."""
        roles: dict[str, float] = {}
        for pid, (role, cpu, children) in self.seen.items():
            _role, cpu0, children0 = self.base.get(pid, (role, 0.0, 0.0))
            if role.startswith("flow:"):
                role = "parent_run" if role == f"flow:{parent_run_id}" else "batch_runs"
                role = "runs_unnamed" if role == "flow:?" else role
            roles[role] = round(roles.get(role, 0.0) + cpu - cpu0, 1)
            if role == "workers":
                roles["runs_reaped"] = round(
                    roles.get("runs_reaped", 0.0) + children - children0, 1
                )
        return dict(sorted(roles.items()))


SAMPLED_RUN_ROLES = ("batch_runs", "parent_run", "runs_unnamed")
"""Roles sampled while they ran: their ended processes are in ``runs_reaped`` too."""


def cpu_total(roles: dict[str, float]) -> float:
    """Every role's CPU, each process once: the run processes by the larger of their
    workers' exact count of the ended ones and the samples (which miss a process's last
    half second, but see one not yet reaped at the end)."""
    sampled = sum(v for k, v in roles.items() if k in SAMPLED_RUN_ROLES)
    others = sum(v for k, v in roles.items() if k not in SAMPLED_RUN_ROLES and k != "runs_reaped")
    return others + max(sampled, roles.get("runs_reaped", 0.0))


def run_night(
    api: Api, workers: int, procs: Procs, env: dict, timeout: float, dbs: tuple[str, str]
) -> dict:
    api_url = str(api.client.base_url).rstrip("/")
    dep = api.get(f"/deployments/name/{DISTRICTS_DEPLOYMENT}")
    response = api.client.patch(f"/deployments/{dep['id']}", json={"concurrency_limit": workers})
    response.raise_for_status()
    limit = api.get(f"/deployments/{dep['id']}")["global_concurrency_limit"]
    assert limit and limit["limit"] == workers, limit
    started = [
        procs.start(
            f"worker-{workers}-{i}",
            ["bash", str(ROOT / "deployments" / "worker.sh"), "--name", f"bench-{workers}-{i}"],
            env,
        )
        for i in range(workers)
    ]
    deadline = time.monotonic() + 90
    while len(api.post("/work_pools/selective-sync/workers/filter", {})) < workers:
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not register; see the worker logs")
        time.sleep(0.5)
    before = api.counts()
    parent_dep = api.get("/deployments/name/reconcile/reconcile-nightly")
    with CpuSampler(*dbs, api_url) as cpu:
        t0 = time.monotonic()
        created_at = datetime.now(UTC)
        run = api.post(f"/deployments/{parent_dep['id']}/create_flow_run", {"parameters": {}})
        while True:
            run = api.get(f"/flow_runs/{run['id']}")
            if (run.get("state") or {}).get("type") in TERMINAL:
                break
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"the night did not finish in {timeout:.0f} s")
            time.sleep(1)
        wall = time.monotonic() - t0
    after = api.counts()
    for proc in started:
        procs.stop(proc)
    children = api.filter_all(
        "flow_runs",
        {
            "deployments": {"id": {"any_": [dep["id"]]}},
            "flow_runs": {"expected_start_time": {"after_": created_at.isoformat()}},
        },
    )
    districts = api.filter_all(
        "task_runs",
        {
            "flow_runs": {"id": {"any_": [c["id"] for c in children] or [run["id"]]}},
            "task_runs": {"name": {"like_": "reconcile-district-"}},
        },
    )
    if DISTRICTS_DEPLOYMENT == BASELINE_DEPLOYMENT:
        districts = children  # one flow run per district
    return {
        "parent": run,
        "wall": wall,
        "children": children,
        "districts": districts,
        "before": before,
        "after": after,
        "cpu_s": cpu.by_role(run["id"]),
    }


def night_keys(api: Api, children: list[dict]) -> dict:
    ids = [c["id"] for c in children]
    sent = succeeded = failed = 0
    errors = {}
    for start in range(0, len(ids), 100):
        body = {
            "artifacts": {
                "flow_run_id": {"any_": ids[start : start + 100]},
                "key": {"like_": "reconcile-district-"},
            }
        }
        for artifact in api.filter_all("artifacts", body):
            rows = json.loads(artifact["data"])
            for row in rows:
                if row["object"]:
                    sent += row["sent"]
                    succeeded += row["synced"] + row["unchanged"]
                    failed += row["failed"]
                if row["error"]:
                    errors[row["district"]] = row["error"]
    return {"sent": sent, "succeeded": succeeded, "failed": failed, "errors": errors}


def night_history(state_url: str, since: datetime) -> dict:
    """The Sync History entries the night wrote: the ledger's requests of the scheduled
    reconciliation since ``since``, by status and origin, and their key rows."""
    from sqlalchemy import func, select

    from selective_sync.db import make_engine
    from selective_sync.reconcile import REQUESTER
    from selective_sync.schema import sync_key_outcome, sync_request

    engine = make_engine(state_url)
    r, k = sync_request.c, sync_key_outcome.c
    mine = (r.requested_by == REQUESTER) & (r.requested_at >= since.replace(tzinfo=None))
    try:
        with engine.connect() as conn:
            by_status = dict(
                conn.execute(select(r.status, func.count()).where(mine).group_by(r.status)).all()
            )
            by_origin = dict(
                conn.execute(select(r.origin, func.count()).where(mine).group_by(r.origin)).all()
            )
            keys = conn.execute(
                select(func.count())
                .select_from(sync_key_outcome.join(sync_request, k.run_id == r.run_id))
                .where(mine)
            ).scalar_one()
    finally:
        engine.dispose()
    return {
        "requests": sum(by_status.values()),
        "by_status": by_status,
        "by_origin": {str(k): v for k, v in by_origin.items()},
        "key_rows": keys,
    }


def drift_after(out: Path, districts, broken: int, manifests: dict, state_url: str) -> dict:
    """Every error key left, straight from the databases, by why it is left."""
    from selective_sync.db import make_engine
    from selective_sync.registry import get_object, object_names
    from selective_sync.settings import sqlite_url
    from selective_sync.verification.engine import verify_object

    state = make_engine(state_url)
    left = {"missing_at_district": 0, "will_fail": 0, "other": 0}
    others: list[str] = []
    try:
        for number, _name in districts:
            if number == broken:
                continue
            engine = make_engine(sqlite_url(out / f"d{number}" / "district.db"))
            manifest = manifests[number]
            try:
                for name in object_names():
                    found = verify_object(engine, state, get_object(name), number)
                    refused = set(k for keys in manifest["will_fail"][name].values() for k in keys)
                    left["missing_at_district"] += len(found.missing_at_district)
                    for key in list(found.missing_at_state) + list(found.mismatched):
                        if key in refused:
                            left["will_fail"] += 1
                        else:
                            left["other"] += 1
                            others.append(f"{number} {name} {key}")
            finally:
                engine.dispose()
    finally:
        state.dispose()
    left["examples"] = others[:10]
    return left


def batch_of(run: dict) -> list[int]:
    params = run["parameters"]
    return params["districts"] if "districts" in params else [params["district"]]


def timeline(parent: dict, children: list[dict]) -> list[dict]:
    """Each batch run relative to the parent's start: created, started, ended (seconds)."""

    def at(text: str | None) -> float | None:
        if not text or not parent.get("start_time"):
            return None
        moment = datetime.fromisoformat(text) - datetime.fromisoformat(parent["start_time"])
        return round(moment.total_seconds(), 1)

    rows = [
        {
            "districts": len(batch_of(c)),
            "created": at(c.get("created")),
            "started": at(c.get("start_time")),
            "ended": at(c.get("end_time")),
        }
        for c in children
    ]
    return sorted(rows, key=lambda r: r["created"] or 0.0) + [
        {"parent_ended": at(parent.get("end_time"))}
    ]


def report_night(
    workers: int, night: dict, keys: dict, drift: dict, growth: int, districts: int, history: dict
) -> dict:
    children = night["children"]
    times = sorted(d["total_run_time"] for d in night["districts"])
    states = {}
    for d in night["districts"]:
        states[d["state"]["type"]] = states.get(d["state"]["type"], 0) + 1
    made = {k: night["after"][k] - night["before"][k] for k in night["before"]}
    total = cpu_total(night["cpu_s"])
    figures = {
        "workers": workers,
        "wall_s": round(night["wall"], 1),
        "parent_state": night["parent"]["state"]["type"],
        "batch_runs": len(children),
        "batch_sizes": sorted(len(batch_of(c)) for c in children),
        "batch_timeline_s": timeline(night["parent"], children),
        "district_task_runs": len(night["districts"]),
        "district_states": states,
        "district_median_s": round(statistics.median(times), 2) if times else None,
        "district_max_s": round(max(times), 2) if times else None,
        "keys_sent": keys["sent"],
        "keys_succeeded": keys["succeeded"],
        "keys_failed": keys["failed"],
        "districts_in_error": keys["errors"],
        "drift_left": drift,
        "prefect_objects": made,
        "prefect_db_growth_mb": round(growth / 1e6, 1),
        "sync_history_entries": history,
        "cpu_s_by_role": night["cpu_s"],
        "cpu_s_by_role_per_district": {
            k: round(v / max(districts, 1), 2) for k, v in night["cpu_s"].items()
        },
        "cpu_s_total": round(total, 1),
        "cpu_s_per_district": round(total / max(districts, 1), 2),
        "cores_busy": round(total / max(night["wall"], 1e-9), 2),
    }
    log(f"night with {workers} worker(s): {json.dumps(figures, indent=1)}")
    return figures


# ---------------------------------------------------------------- history and summary at scale


def seed_history(district: int, entries: int) -> None:
    """``entries`` finished Sync History entries of ``district``, written to the state's
    ledger as the flow writes them (a request row, closed, with its key's outcome)."""
    from selective_sync.db import make_engine
    from selective_sync.ledger import finish_request, open_request
    from selective_sync.models import KeyOutcome, Outcome, RequestStatus
    from selective_sync.settings import get_settings

    engine = make_engine(get_settings().resolved_state_url)
    now = datetime.now(UTC)
    try:
        for i in range(entries):
            run_id = f"bench-{district}-{i:06d}"
            open_request(
                engine,
                run_id=run_id,
                run_name=f"PersonIdentity x1 by {ADMIN} #{i}",
                district=district,
                object_name="PersonIdentity",
                requested_by=ADMIN,
                requested_at=now,
                check_dependencies=False,
                dry_run=False,
                keys=[100000 + i],
            )
            finish_request(
                engine,
                run_id,
                RequestStatus.COMPLETE,
                completed_at=now,
                outcomes=[("PersonIdentity", KeyOutcome(100000 + i, Outcome.SYNCED))],
            )
    finally:
        engine.dispose()


def timed_command(args: list[str], env: dict) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        log(f"{' '.join(args[1:])} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def seed_summaries(out: Path, env: dict, state_url: str, count: int) -> dict:
    """``count`` districts with a stored Verification Summary in the state database: the
    nights' own, and for the rest a copy of one district's rows under their number (as
    ``records.store_encoded`` writes them). Returns the environment that configures all
    of them."""
    from selective_sync.db import make_engine
    from selective_sync.verification.records import current_rows, insert_result

    engine = make_engine(state_url)
    try:
        numbers = [number for number, _name in districts_of(count)]
        stored = current_rows(engine, numbers)
        model = next(iter(stored.values()))
        with engine.begin() as conn:
            for number, name in districts_of(count):
                if number in stored:
                    continue
                for row in model:
                    copy = {
                        **row,
                        "district": number,
                        "district_name": name,
                        "issues_run": f"bench-{number}",
                        "issue_rows": 0,
                    }
                    insert_result(conn, copy, [])
    finally:
        engine.dispose()
    lines = ["districts:"]
    for number, name in districts_of(count):
        lines += [f"  - number: {number}", f"    name: {name}", "    url: sqlite:///unused.db"]
    path = out / f"districts-{count}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return {**env, "SELECTIVE_SYNC_DISTRICTS_FILE": str(path)}


def at_scale(env: dict, state_url: str, district: int, entries: int, summaries: int, out: Path):
    env = seed_summaries(out, env, state_url, summaries)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from selective_sync.history.store import LedgerHistoryStore
        from selective_sync.verification.store import DatabaseSummaryStore

        store = DatabaseSummaryStore()
        store.load_state_summary()  # this process's first read pays its connection set-up
        t0 = time.monotonic()
        state = store.load_state_summary()
        state_s = time.monotonic() - t0
        command_state, _out = timed_command(
            [CLI, "summary", "--all-districts", "--user", ADMIN], env
        )
        log(f"seeding {entries} Sync History entries of district {district}")
        seed_history(district, entries)
        history = LedgerHistoryStore()
        t0 = time.monotonic()
        listed = history.list_entries(district, user=ADMIN)
        list_s = time.monotonic() - t0
        t0 = time.monotonic()
        everything = history.list_entries(district, limit=entries + 100, user=ADMIN)
        list_all_s = time.monotonic() - t0
        command_list, _out = timed_command(
            [CLI, "history", "list", "--district", str(district), "--user", ADMIN], env
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    figures = {
        "state_summary_districts": len(state.districts),
        "state_summary_s": round(state_s, 2),
        "state_summary_command_s": round(command_state, 2),
        "history_entries_seeded": entries,
        "history_list_rows": len(listed),
        "history_list_s": round(list_s, 2),
        "history_list_all_rows": len(everything),
        "history_list_all_s": round(list_all_s, 2),
        "history_list_command_s": round(command_list, 2),
    }
    log(f"at scale: {json.dumps(figures, indent=1)}")
    return figures


def extrapolate(nights: list[dict], districts: int, persons: int) -> dict:
    """A 180-district, 700,000-student state from the measured nights, assuming each
    district's time and Prefect storage grow linearly with its students (conservative:
    part of a district's time is a fixed cost)."""
    per_district_persons = TARGET_STUDENTS / TARGET_DISTRICTS
    scale = per_district_persons / persons
    out = {}
    for night in nights:
        w = night["workers"]
        wall = night["wall_s"] * (TARGET_DISTRICTS / districts) * max(scale, 1.0)
        growth = night["prefect_db_growth_mb"] * (TARGET_DISTRICTS / districts)
        objects = {
            k: round(v * TARGET_DISTRICTS / districts) for k, v in night["prefect_objects"].items()
        }
        cpu = night["cpu_s_per_district"] * TARGET_DISTRICTS * max(scale, 1.0)
        out[f"{w}_workers"] = {
            "night_minutes": round(wall / 60, 1),
            # Every role's CPU of the night spread over 2 cores with none idle: no night on
            # one 2-core machine is shorter (the wall above includes this run's other load).
            "cpu_floor_minutes_on_2_cores": round(cpu / 2 / 60, 1),
            "prefect_db_mb_per_night": round(growth, 1),
            "prefect_db_gb_per_year": round(growth * 365 / 1000, 2),
            "prefect_objects_per_night": objects,
            "prefect_objects_per_year": {k: v * 365 for k, v in objects.items()},
        }
    return out


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--districts", type=int, default=100)
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--history-entries", type=int, default=1000)
    parser.add_argument("--summary-districts", type=int, default=100)
    parser.add_argument("--night-timeout", type=float, default=1500)
    parser.add_argument(
        "--skip-at-scale", action="store_true", help="No summary/history timing at scale."
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help=f"Drive a checkout from before #24's nightly ({BASELINE_DEPLOYMENT}), e.g. "
        "with PYTHONPATH pointing at it, for a same-run baseline.",
    )
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    if args.baseline:
        global DISTRICTS_DEPLOYMENT
        DISTRICTS_DEPLOYMENT = BASELINE_DEPLOYMENT
    tag = f"ss_statewide_{os.getpid()}"
    out = (args.out or ROOT / "bench" / "out" / tag).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    state_db, prefect_db = f"{tag}_state", f"{tag}_prefect"
    state_url = f"{args.pg}/{state_db}"
    districts = districts_of(args.districts)
    broken = districts[len(districts) // 2][0]
    procs = Procs(out / "logs")
    t_all = time.monotonic()
    log(f"load before: {os.getloadavg()}; output in {out}")
    pg_admin(args.pg, f"CREATE DATABASE {state_db}")
    pg_admin(args.pg, f"CREATE DATABASE {prefect_db}")
    try:
        t0 = time.monotonic()
        manifests = generate(out, districts, args.persons, state_url)
        log(
            f"generated {len(districts)} districts x {args.persons} persons in "
            f"{time.monotonic() - t0:.1f} s"
        )
        districts_file = write_districts_file(out, districts, broken)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SELECTIVE_SYNC_"))
        }
        base_env.update(
            PATH=f"{BIN}{os.pathsep}{base_env.get('PATH', '')}",
            DO_NOT_TRACK="1",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_HOME=str(out / "prefect-home"),
            PREFECT_API_URL=api_url,
        )
        app_env = {
            **base_env,
            "SELECTIVE_SYNC_DISTRICTS_FILE": str(districts_file),
            "SELECTIVE_SYNC_STATE_URL": state_url,
            "SELECTIVE_SYNC_DATA_DIR": str(out / "data"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        t0 = time.monotonic()
        done = subprocess.run(
            [CLI, "init-db", "--side", "state"], env=app_env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        log(
            f"init-db registered the districts in {time.monotonic() - t0:.1f} s: "
            f"{done.stdout.strip().splitlines()[-1][:120]}..."
        )
        for args_ in (
            ["rights", "bootstrap", ADMIN],
            [
                "rights",
                "grant",
                "scheduled reconciliation",
                "W",
                "--all-districts",
                "--user",
                ADMIN,
            ],
        ):
            done = subprocess.run([CLI, *args_], env=app_env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        server_env = {
            **base_env,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
                f"{args.pg.replace('+psycopg', '+asyncpg')}/{prefect_db}"
            ),
            # Scheduled runs of the nightly deployments would count as this night's objects.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        }
        server = procs.start(
            "server",
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            server_env,
        )
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("prefect server did not start; see logs/server.log")
            time.sleep(0.5)
        done = subprocess.run(
            ["bash", str(ROOT / "deployments" / "setup.sh")],
            env={**base_env, "PREFECT": PREFECT},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        log("server on PostgreSQL up, work pool and deployments made")
        api = Api(api_url)
        nights = []
        for n, w in enumerate(workers):
            if n:
                t0 = time.monotonic()
                manifests = generate(out, districts, args.persons, state_url)
                log(f"drift seeded again in {time.monotonic() - t0:.1f} s")
            size_before = pg_size(args.pg, prefect_db)
            log(f"night with {w} worker(s): load {os.getloadavg()}")
            since = datetime.now(UTC)
            night = run_night(api, w, procs, app_env, args.night_timeout, (prefect_db, state_db))
            log(f"night with {w} worker(s) done: load {os.getloadavg()}")
            growth = pg_size(args.pg, prefect_db) - size_before
            keys = night_keys(api, night["children"])
            drift = drift_after(out, districts, broken, manifests, state_url)
            history = night_history(state_url, since)
            nights.append(report_night(w, night, keys, drift, growth, len(districts), history))
        if len(nights) > 1:
            fewest, most = (
                min(nights, key=lambda n: n["workers"]),
                max(nights, key=lambda n: n["workers"]),
            )
            log(
                f"wall ratio {most['workers']} vs {fewest['workers']} workers: "
                f"{most['wall_s'] / fewest['wall_s']:.2f}"
            )
        scale = (
            None
            if args.skip_at_scale
            else at_scale(
                app_env,
                state_url,
                districts[0][0],
                args.history_entries,
                args.summary_districts,
                out,
            )
        )
        figures = {
            "districts": len(districts),
            "persons": args.persons,
            "broken_district": broken,
            "nights": nights,
            "at_scale": scale,
            "extrapolation": extrapolate(nights, len(districts), args.persons),
            "total_s": round(time.monotonic() - t_all, 1),
            "load_after": os.getloadavg(),
        }
        (out / "figures.json").write_text(json.dumps(figures, indent=2))
        log(f"figures: {json.dumps(figures, indent=1)}")
    finally:
        procs.stop_all()
        if not args.keep:
            for db in (state_db, prefect_db):
                with contextlib.suppress(Exception):
                    pg_admin(args.pg, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
