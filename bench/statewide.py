"""A state-wide night: many districts reconciled by the nightly over the work pool.

    .venv/bin/python bench/statewide.py [--districts 100] [--persons 2000] [--workers 1,2]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432] [--out DIR] [--keep]
        [--history-entries 1000]

Builds, with real parts only:

- N districts, each its own SQLite database made by the demo generator (seed 1000+i, so
  each district has its own seeded drift), listed in a districts file (YAML);
- one state database on PostgreSQL holding every district's rows (``init-db`` registers
  the districts there) and the rights (the reconciliation requester holds W);
- a real ``prefect server`` on its own PostgreSQL database, the work pool and every
  deployment (``deployments/setup.sh``), and W process workers (``deployments/worker.sh``).

One district's URL points at a file that does not exist, on purpose. For each W in
``--workers`` it regenerates the drift, sets the ``reconcile-district`` deployment's
concurrency limit to W, starts W workers, runs ``reconcile/reconcile-nightly`` for every
district and prints: wall time, per-district median/max, keys sent/succeeded/failed, the drift left
after (verified straight from the databases: must be only the seeded will-fail keys and
the keys missing at the district, which a sync never touches), the Prefect objects
created (flow runs, task runs, artifacts), the Prefect database's growth and the CPU
seconds each role used (district runs, the parent run, workers, the Prefect server, each
PostgreSQL database's backends), with their sum per district; then the
extrapolation to a 180-district, 700,000-student state for one night and for a year.

Afterwards (item 5 of issue 17): the state's Verification Summary over every district
(``summary --all-districts``, stored results) and ``history list`` of one district with
``--history-entries`` entries (seeded in the ledger as the flow writes them), each timed
in-process (the answer) and as the whole command. Drops its databases at the end unless
``--keep``.
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
    server, the workers, the parent's and the districts' flow-run processes, and the
    PostgreSQL backends of the Prefect database, of the state database and the rest.
    A process's last half second may be missed; nothing else runs on the bench."""

    def __init__(self, prefect_db: str, state_db: str):
        import threading

        self.dbs = {prefect_db: "pg_prefect", state_db: "pg_state"}
        self.seen: dict[int, tuple[str, float]] = {}
        self.tick = os.sysconf("SC_CLK_TCK")
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self.base = dict(self.seen)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self.stop_event.wait(0.5):
            self._sample()

    def _role(self, pid: int, cmd: str) -> str | None:
        if cmd.startswith("postgres:"):
            return next((r for db, r in self.dbs.items() if f" {db} " in cmd), "pg_other")
        if "prefect.engine" in cmd:
            with contextlib.suppress(OSError):
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
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
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / self.tick
            known = self.seen.get(pid)
            role = known[0] if known else self._role(pid, cmd)
            if role:
                self.seen[pid] = (role, cpu)

    def by_role(self, parent_run_id: str) -> dict[str, float]:
        """CPU seconds used during the night, by role (district runs summed)."""
        roles: dict[str, float] = {}
        for pid, (role, cpu) in self.seen.items():
            used = cpu - self.base.get(pid, (role, 0.0))[1]
            if role.startswith("flow:"):
                role = "parent_run" if role == f"flow:{parent_run_id}" else "district_runs"
            roles[role] = round(roles.get(role, 0.0) + used, 1)
        return dict(sorted(roles.items()))


def run_night(
    api: Api, workers: int, procs: Procs, env: dict, timeout: float, dbs: tuple[str, str]
) -> dict:
    dep = api.get("/deployments/name/reconcile-district/reconcile-one-district")
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
    with CpuSampler(*dbs) as cpu:
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
    return {
        "parent": run,
        "wall": wall,
        "children": children,
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


def report_night(
    workers: int, night: dict, keys: dict, drift: dict, growth: int, districts: int
) -> dict:
    children = night["children"]
    times = sorted(c["total_run_time"] for c in children)
    states = {}
    for c in children:
        states[c["state"]["type"]] = states.get(c["state"]["type"], 0) + 1
    made = {k: night["after"][k] - night["before"][k] for k in night["before"]}
    figures = {
        "workers": workers,
        "wall_s": round(night["wall"], 1),
        "parent_state": night["parent"]["state"]["type"],
        "district_runs": len(children),
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
        "cpu_s_by_role": night["cpu_s"],
        "cpu_s_per_district": round(sum(night["cpu_s"].values()) / max(len(children), 1), 2),
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


def seed_summaries(out: Path, env: dict, count: int) -> dict:
    """``count`` districts with a stored Verification Summary in the state database: the
    nights' own, and for the rest a copy of a real stored result under their number (their
    figures only: the state's view reads no record issues). Returns the environment that
    configures all of them."""
    from selective_sync.db import make_engine
    from selective_sync.verification.records import current_rows, insert_result

    engine = make_engine(env["SELECTIVE_SYNC_STATE_URL"])
    try:
        listed = list(districts_of(count))
        stored = current_rows(engine, [number for number, _name in listed])
        rows = next(iter(stored.values()))
        lines = ["districts:"]
        with engine.begin() as conn:
            for number, name in listed:
                lines += [
                    f"  - number: {number}",
                    f"    name: {name}",
                    "    url: sqlite:///unused.db",
                ]
                if number not in stored:
                    for row in rows:
                        insert_result(conn, {**row, "district": number, "district_name": name}, [])
    finally:
        engine.dispose()
    path = out / f"districts-{count}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return {**env, "SELECTIVE_SYNC_DISTRICTS_FILE": str(path)}


def at_scale(api: Api, env: dict, district: int, entries: int, summaries: int, out: Path) -> dict:
    env = seed_summaries(out, env, summaries)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        import flows.cli  # noqa: F401  (the CLI's backend)
        from flows.history_store import list_entries
        from selective_sync.verification.store import DatabaseSummaryStore

        load_state_summary = DatabaseSummaryStore().load_state_summary

        load_state_summary()  # this process's first API call pays its connection set-up
        t0 = time.monotonic()
        state = load_state_summary()
        state_s = time.monotonic() - t0
        command_state, _out = timed_command(
            [CLI, "summary", "--all-districts", "--user", ADMIN], env
        )
        log(f"seeding {entries} Sync History entries of district {district}")
        seed_history(district, entries)
        t0 = time.monotonic()
        listed = list_entries(district, user=ADMIN)
        list_s = time.monotonic() - t0
        t0 = time.monotonic()
        everything = list_entries(district, limit=entries + 100, user=ADMIN)
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
        out[f"{w}_workers"] = {
            "night_minutes": round(wall / 60, 1),
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
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
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
            night = run_night(api, w, procs, app_env, args.night_timeout, (prefect_db, state_db))
            growth = pg_size(args.pg, prefect_db) - size_before
            keys = night_keys(api, night["children"])
            drift = drift_after(out, districts, broken, manifests, state_url)
            nights.append(report_night(w, night, keys, drift, growth, len(districts)))
        if len(nights) > 1:
            ratio = nights[-1]["wall_s"] / nights[0]["wall_s"]
            log(
                f"wall ratio {nights[-1]['workers']} vs {nights[0]['workers']} workers: "
                f"{ratio:.2f} (target <= 0.6)"
            )
        scale = at_scale(
            api, app_env, districts[0][0], args.history_entries, args.summary_districts, out
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
