"""Benchmark the whole ``selective_sync`` flow against a raw bulk upsert of the same rows.

    .venv/bin/python bench/sync.py --keys 10000 [--persons 20000] [--dir DIR]
                                   [--object PersonIdentity|Enrollment] [--differ 0.9]
                                   [--not-found 0.01] [--repeat 1] [--seed S]
                                   [--district-url U --state-url U]

Builds (or reuses) a demo district of ``--persons`` persons in DIR (default
bench/out/sync-<persons>). Picks ``--keys`` IDs of the object at random from the district
(plus a share of IDs that exist nowhere, reported not found) and, on a copy of the state
database, changes a compared column of ``--differ`` of them so that they really need
writing. Every measured run gets its own fresh copy of that state.

In one process, with Prefect's ephemeral API (no server):

1. a warm-up flow of 1 key (Prefect's API start-up, reported apart);
2. the flow's fixed cost: a flow of 1 key;
3. the flow of N keys: wall time, outcome counts, task runs (planned and as recorded by the
   API), a phase breakdown (core time spent verifying and syncing, measured by wrapping
   the plain functions the tasks call);
4. the physical baseline: read the district rows of the keys that the flow synced or
   found unchanged with IN batches, then, in one transaction on a fresh copy of the
   state, delete those keys' child rows (as the sync removes children the district no
   longer has) and one ``INSERT ... ON CONFLICT DO UPDATE`` executemany per table;
5. checks: every key has exactly one outcome, and verifying the keys afterwards finds
   differences only for keys that failed (also for the baseline's copy).

Per-key cost above the fixed cost = (T_N - T_1) / (N - 1). Targets (issue 3): 10,000 keys
end to end under 20 s, per-key cost above the fixed cost under 1 ms. With ``--repeat R``
T_1 and T_N are medians of R runs (the machine is shared: timings vary by ±30%).

Prefect keeps its database in DIR/prefect-home (PREFECT_HOME), so the first warm-up after
a new DIR also runs Prefect's migrations. SELECTIVE_SYNC_MAX_WORKERS and
SELECTIVE_SYNC_PER_KEY_TASK_LIMIT are taken from the environment to try other fan-outs;
every other SELECTIVE_SYNC_* setting is replaced. Writes only in DIR. Exit status 1 when a
check fails (not when a target is missed).

With ``--district-url U --state-url U`` (SQLAlchemy URLs, e.g. PostgreSQL or MariaDB) the
demo is built on those servers instead (DIR, default bench/out/sync-<persons>-servers,
then holds only the manifest, Prefect's home and the rights file). A database named in
a URL that does not exist is created first (PostgreSQL: from the ``postgres`` database,
MariaDB/MySQL: ``CREATE DATABASE IF NOT EXISTS``, utf8mb4), and left in place afterwards:
drop it yourself. The demo rows of both databases are replaced on every start, and the
change is made on the state server itself. A server cannot be copied per run, so every
measured run (and the baseline) starts by re-applying the same change to its keys
(after a run has synced them this restores the same drift; differences that the demo
itself had among the keys, missing or mismatched rows, stay repaired after the first
run: the "state before" lines show what each run started from). The warm-up and 1-key
flows use a key outside the N keys. The baseline upserts with the dialect's own
statement (ON CONFLICT DO UPDATE, ON DUPLICATE KEY UPDATE). URLs are printed masked.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import threading
import time
from collections import Counter
from contextlib import closing, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_TOTAL_S = 20.0
TARGET_PER_KEY_MS = 1.0
BENCH_USER = "bench"
# Settings the bench keeps from the environment, to try other fan-out shapes.
TUNING = ("SELECTIVE_SYNC_MAX_WORKERS", "SELECTIVE_SYNC_PER_KEY_TASK_LIMIT")

# Compared column changed at the state to make a key differ, per object: (table, SQL SET).
MUTATIONS = {
    "PersonIdentity": (
        "state_identity",
        "last_name = last_name || 'Z'",
        # Only the person's current identity (the one verification compares).
        "identity_id IN (SELECT current_identity_id FROM state_person "
        "WHERE district_number = ? AND person_id = ?)",
    ),
    "Enrollment": ("state_enrollment", "school_id = school_id + 1", "enrollment_id = ?"),
    "Graduation": (
        "state_graduation",
        "cohort_end_year = cohort_end_year + 1",
        "graduation_id = ?",
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1000, help="IDs in the measured request")
    parser.add_argument("--persons", type=int, default=20_000, help="persons in the demo")
    parser.add_argument("--dir", type=Path, default=None, help="default bench/out/sync-<persons>")
    parser.add_argument("--object", default="PersonIdentity", choices=sorted(MUTATIONS))
    parser.add_argument("--differ", type=float, default=0.9, help="share of keys made to differ")
    parser.add_argument(
        "--not-found", type=float, default=0.01, help="share of IDs that exist nowhere"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of T_1 and T_N (median)")
    parser.add_argument("--seed", type=int, default=7, help="demo seed (key choice too)")
    parser.add_argument(
        "--district-url",
        default=None,
        help="district database URL (server; the database is created if missing)",
    )
    parser.add_argument(
        "--state-url",
        default=None,
        help="state database URL (server; the database is created if missing)",
    )
    args = parser.parse_args(argv)
    if bool(args.district_url) != bool(args.state_url):
        parser.error("give both --district-url and --state-url, or neither")
    if args.keys < 2:
        parser.error("--keys must be at least 2")
    if not 0 <= args.differ <= 1 or not 0 <= args.not_found < 1:
        parser.error("--differ and --not-found are shares between 0 and 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    default_dir = f"sync-{args.persons}" + ("-servers" if args.state_url else "")
    args.dir = (args.dir or ROOT / "bench" / "out" / default_dir).resolve()
    return args


def set_environment(directory: Path, district_url: str | None = None) -> None:
    """Prefect (ephemeral API, quiet, no analytics) and the tool's settings for DIR."""
    for name in list(os.environ):
        if name.startswith("SELECTIVE_SYNC_") and name not in TUNING:
            del os.environ[name]
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.update(
        {
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Our own Prefect database: other people's runs on ~/.prefect do not interfere.
            "PREFECT_HOME": str(directory / "prefect-home"),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
            "SELECTIVE_SYNC_DATA_DIR": str(directory),
            "SELECTIVE_SYNC_RIGHTS_URL": f"sqlite:///{directory / 'bench-rights.db'}",
        }
    )
    if district_url:
        os.environ["SELECTIVE_SYNC_DISTRICT_URL"] = district_url


def district_url_now() -> str:
    """The district the flow reads: the server given, else the demo file in DIR."""
    return os.environ.get("SELECTIVE_SYNC_DISTRICT_URL") or (
        f"sqlite:///{os.environ['SELECTIVE_SYNC_DATA_DIR']}/district.db"
    )


# ------------------------------------------------------------------ the data


def ensure_demo(args: argparse.Namespace) -> dict:
    manifest_path = args.dir / "manifest.json"
    if args.state_url:
        return ensure_server_demo(args)
    if all((args.dir / name).exists() for name in ("manifest.json", "district.db", "state.db")):
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("persons") == args.persons and manifest.get("seed") == args.seed:
            print(f"reusing the demo in {args.dir}")
            return manifest
    from selective_sync.demo import generate_demo

    print(f"generating a demo of {args.persons:,} persons in {args.dir} …", flush=True)
    started = time.perf_counter()
    generate_demo(args.dir, persons=args.persons, seed=args.seed)
    print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    return json.loads(manifest_path.read_text())


def choose_keys(args: argparse.Namespace, spec) -> tuple[list[int], list[int], int]:
    """(keys requested, keys made to differ at the state, keys that exist nowhere)."""
    if args.district_url:
        present = server_district_keys(args.district_url, spec)
    else:
        with closing(sqlite3.connect(args.dir / "district.db")) as conn:
            present = [k for (k,) in conn.execute(f"SELECT {spec.key_column} FROM {spec.root}")]
    missing = round(args.keys * args.not_found)
    wanted = args.keys - missing
    if wanted > len(present):
        sys.exit(
            f"the demo has {len(present):,} {spec.name} keys at the district; "
            f"{wanted:,} asked for: use --persons larger"
        )
    rng = random.Random(f"bench sync {args.seed} {spec.name} {args.keys}")
    found = rng.sample(present, wanted)
    top = max(present)
    nowhere = [top + 1_000_000 + i for i in range(missing)]
    keys = found + nowhere
    rng.shuffle(keys)
    differ = rng.sample(found, round(len(found) * args.differ))
    return keys, differ, missing


def make_template(args: argparse.Namespace, spec, district: int, differ: list[int]) -> Path:
    """A copy of the state with ``differ`` keys changed; every run copies this."""
    template = args.dir / "state-bench-template.db"
    remove_db(template)
    shutil.copyfile(args.dir / "state.db", template)
    table, assignment, where = MUTATIONS[spec.name]
    conn = sqlite3.connect(template)
    try:
        # The PersonIdentity condition names the district twice (outer and sub-query).
        extra = (district,) if spec.name == "PersonIdentity" else ()
        cur = conn.executemany(
            f"UPDATE {table} SET {assignment} WHERE district_number = ? AND {where}",
            [(district, *extra, k) for k in differ],
        )
        changed = cur.rowcount
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    print(f"state template: {changed:,} rows of {table} changed for {len(differ):,} keys")
    return template


# ------------------------------------------------------------------ the data on servers

DB_NAME = re.compile(r"[A-Za-z0-9_]+")


def ensure_server_database(url: str) -> None:
    """Create the database named in ``url`` on its server if it does not exist."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from selective_sync.db import mask_url

    parsed = make_url(url)
    backend, name = parsed.get_backend_name(), parsed.database
    if backend == "sqlite":
        return
    if not name or not DB_NAME.fullmatch(name):
        sys.exit(f"{mask_url(url)}: database names here are [A-Za-z0-9_] only")
    if backend == "postgresql":
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    elif backend in ("mysql", "mariadb"):
        admin = create_engine(parsed.set(database="information_schema"))
    else:
        sys.exit(f"{mask_url(url)}: only PostgreSQL, MariaDB/MySQL or SQLite")
    try:
        with admin.connect() as conn:
            if backend == "postgresql":
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if not exists:
                    conn.execute(
                        text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
                    )
            else:
                exists = conn.execute(
                    text("SELECT 1 FROM SCHEMATA WHERE SCHEMA_NAME = :name"), {"name": name}
                ).first()
                if not exists:
                    conn.execute(
                        text(
                            f"CREATE DATABASE IF NOT EXISTS `{name}` "
                            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                        )
                    )
                    conn.commit()
    finally:
        admin.dispose()
    if not exists:
        print(f"created database {mask_url(url)}")


def ensure_server_demo(args: argparse.Namespace) -> dict:
    """Rebuild the demo on the servers (their rows may have changed since: never reused)."""
    from selective_sync.db import mask_url
    from selective_sync.demo import generate_demo

    for url in (args.district_url, args.state_url):
        ensure_server_database(url)
    print(
        f"generating a demo of {args.persons:,} persons: district "
        f"{mask_url(args.district_url)}, state {mask_url(args.state_url)} …",
        flush=True,
    )
    started = time.perf_counter()
    generate_demo(
        args.dir,
        persons=args.persons,
        seed=args.seed,
        district_url=args.district_url,
        state_url=args.state_url,
    )
    print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    return json.loads((args.dir / "manifest.json").read_text())


def server_district_keys(url: str, spec) -> list[int]:
    from sqlalchemy import select

    from selective_sync.db import make_engine
    from selective_sync.schema import district_table

    table = district_table(spec.root)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            column = table.c[spec.key_column]
            return list(conn.execute(select(column).order_by(column)).scalars())
    finally:
        engine.dispose()


def spare_keys(manifest: dict, spec, present_keys: list[int], keys: list[int]) -> list[int]:
    """Two keys outside the N keys, without a difference of the demo's own (1-key runs)."""
    taken = set(keys)
    for listed in manifest.get(spec.name, {}).values():
        taken.update(listed)
    spares = [k for k in present_keys if k not in taken][:2]
    if len(spares) < 2:
        sys.exit("no key left outside the N keys for the 1-key flows: use --persons larger")
    return spares


class ServerState:
    """The state on a server: the change that makes keys differ, applied in place."""

    def __init__(self, url: str, spec, district: int) -> None:
        from sqlalchemy import bindparam, select, update

        from selective_sync.db import make_engine
        from selective_sync.schema import state_table

        self.url, self.spec, self.district = url, spec, district
        self.engine = make_engine(url)
        keys = bindparam("b_keys", expanding=True)
        same_district = bindparam("b_district")
        # The same changes as MUTATIONS, as SQLAlchemy statements (|| is CONCAT on MySQL).
        if spec.name == "PersonIdentity":
            ident, person = state_table("identity"), state_table("person")
            current = select(person.c.current_identity_id).where(
                person.c.district_number == same_district, person.c.person_id.in_(keys)
            )
            self.stmt = (
                update(ident)
                .where(ident.c.district_number == same_district, ident.c.identity_id.in_(current))
                .values(last_name=ident.c.last_name + "Z")
            )
        elif spec.name == "Enrollment":
            table = state_table("enrollment")
            self.stmt = (
                update(table)
                .where(table.c.district_number == same_district, table.c.enrollment_id.in_(keys))
                .values(school_id=table.c.school_id + 1)
            )
        else:
            table = state_table("graduation")
            self.stmt = (
                update(table)
                .where(table.c.district_number == same_district, table.c.graduation_id.in_(keys))
                .values(cohort_end_year=table.c.cohort_end_year + 1)
            )
        self.table = MUTATIONS[spec.name][0]

    def drift(self, keys: list[int]) -> int:
        """Make ``keys`` differ (one transaction, IN batches); rows changed."""
        from selective_sync.db import chunked

        changed = 0
        with self.engine.begin() as conn:
            for batch in chunked(keys):
                params = {"b_district": self.district, "b_keys": batch}
                changed += conn.execute(self.stmt, params).rowcount
        return changed

    def describe(self, keys: list[int]) -> str:
        """How the state differs from the district for ``keys`` (not timed)."""
        from selective_sync.db import make_engine
        from selective_sync.verification.engine import verify_object

        d_engine = make_engine(district_url_now())
        try:
            found = verify_object(d_engine, self.engine, self.spec, self.district, keys)
        finally:
            d_engine.dispose()
        return (
            f"{len({i.key for i in found.issues}):,} keys differ (missing at state "
            f"{len(found.missing_at_state):,}, mismatched {len(found.mismatched):,})"
        )

    def prepare(self, name: str, keys: list[int], requested: list[int] | None = None) -> str:
        """Re-apply the change to ``keys``; with ``requested``, print what the run meets."""
        changed = self.drift(keys)
        if requested is not None:
            print(
                f"state before {name}: {changed:,} rows of {self.table} changed for "
                f"{len(keys):,} keys; of the {len(requested):,} requested "
                f"{self.describe(requested)}",
                flush=True,
            )
        return self.url

    def dispose(self) -> None:
        self.engine.dispose()


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def fresh_state(args: argparse.Namespace, template: Path, name: str) -> str:
    """A fresh copy of the template state; its URL (a new path, so no cached engine)."""
    path = args.dir / f"state-run-{name}.db"
    remove_db(path)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


# ------------------------------------------------------------------ phase timers


class Phases:
    """Core time inside the tasks, measured by wrapping the plain functions they call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, module, name: str, label: str) -> None:
        original = getattr(module, name)

        def timed(*a, **kw):
            started = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                with self.lock:
                    self.totals[label] += time.perf_counter() - started
                    self.calls[label] += 1

        setattr(module, name, timed)

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


FLOW_PHASES = ("authorise", "parse", "verify tasks", "fan-out", "publish task")


def phase_text(totals: dict, calls: dict, labels) -> str:
    return ", ".join(f"{k} {totals[k]:.2f}/{calls[k]}" for k in labels if k in totals)


def install_phase_timers() -> Phases:
    import flows.sync_request as flow_module
    import tasks.history as history_module
    import tasks.sync as sync_module
    import tasks.verify as verify_module

    phases = Phases()
    phases.wrap(verify_module, "verify_object", "verify core")
    phases.wrap(sync_module, "sync_keys", "sync core (batches)")
    phases.wrap(sync_module, "sync_key", "sync core (per key)")
    # Task calls made by the flow itself (wall time of the task run, Prefect included).
    phases.wrap(flow_module, "parse_ids", "parse")
    phases.wrap(flow_module, "verify_object_task", "verify tasks")
    phases.wrap(flow_module, "publish_history", "publish task")
    phases.wrap(flow_module, "fan_out", "fan-out")
    phases.wrap(flow_module, "authorise_sync", "authorise")
    phases.wrap(history_module, "create_markdown_artifact", "history artifacts")
    phases.wrap(history_module, "create_table_artifact", "history artifacts")
    phases.wrap(history_module, "update_progress_artifact", "progress updates")
    return phases


# ------------------------------------------------------------------ the flow


@contextmanager
def state_url(url: str):
    os.environ["SELECTIVE_SYNC_STATE_URL"] = url
    try:
        yield
    finally:
        os.environ.pop("SELECTIVE_SYNC_STATE_URL", None)


def run_flow(object_name: str, keys: list[int], url: str):
    """Run the whole flow on the state at ``url``; (seconds, result, flow run id)."""
    from flows.sync_request import selective_sync

    with state_url(url):
        started = time.perf_counter()
        state = selective_sync(object_name, keys, BENCH_USER, return_state=True)
        elapsed = time.perf_counter() - started
    result = state.result(raise_on_failure=True)
    return elapsed, result, state.state_details.flow_run_id


def planned_task_runs(n: int) -> tuple[int, str]:
    from selective_sync.settings import get_settings
    from selective_sync.sync.fanout import plan_jobs, writers_in_flight

    settings = get_settings()
    if n <= settings.per_key_task_limit:
        return n, f"{n} per-key tasks (limit {settings.per_key_task_limit})"
    in_flight = writers_in_flight(settings.resolved_state_url, settings.max_workers)
    jobs = plan_jobs(list(range(n)), settings.per_key_task_limit, in_flight)
    return len(jobs), (
        f"{len(jobs)} batch tasks of ≤{len(jobs[0])} keys, {in_flight} in flight "
        f"(limit {settings.per_key_task_limit}, max_workers {settings.max_workers})"
    )


def recorded_task_runs(flow_run_id) -> Counter[str]:
    """Task runs the API stored for the flow run, by task name (waits for stragglers)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    counts: Counter[str] = Counter()
    last = -1
    with get_client(sync_client=True) as client:
        for _ in range(20):
            names: list[str] = []
            while True:
                page = client.read_task_runs(flow_run_filter=flt, limit=200, offset=len(names))
                names += [r.name for r in page]
                if len(page) < 200:
                    break
            counts = Counter(re.sub(r"\d+", "#", name) for name in names)
            if len(names) == last:
                break
            last = len(names)
            time.sleep(0.5)
    return counts


# ------------------------------------------------------------------ the baseline


def baseline(spec, district: int, keys: list[int], url: str) -> tuple[float, dict[str, int]]:
    """Raw SQLAlchemy: read the keys' district rows with IN batches, then, in one
    transaction, delete the keys' child rows at the state and upsert every table's rows
    (one executemany per table)."""
    from sqlalchemy import create_engine, delete, event, select
    from sqlalchemy.dialects import mysql, postgresql
    from sqlalchemy.dialects.sqlite import insert

    from selective_sync.db import chunked
    from selective_sync.schema import district_table, state_table

    def pragmas(dbapi_conn, _record):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    district_url = district_url_now()
    d_engine, s_engine = create_engine(district_url), create_engine(url)
    for engine in (d_engine, s_engine):
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", pragmas)
    if s_engine.dialect.name == "postgresql":
        insert = postgresql.insert
    elif s_engine.dialect.name in ("mysql", "mariadb"):
        insert = mysql.insert
    # Root first: children refer to it.
    parts = sorted(spec.parts, key=lambda p: p.table != spec.root)
    counts: dict[str, int] = {}
    try:
        started = time.perf_counter()
        rows: dict[str, list[dict]] = {}
        with d_engine.connect() as conn:
            for part in parts:
                dtab, stab = district_table(part.table), state_table(part.table)
                cols = [c for c in dtab.columns if c.name in stab.c]
                got = rows.setdefault(part.table, [])
                for batch in chunked(keys):
                    stmt = select(*cols).where(dtab.c[part.link].in_(batch))
                    got.extend(
                        {**row, "district_number": district}
                        for row in conn.execute(stmt).mappings()
                    )
        with s_engine.begin() as conn:
            # As the sync does: child rows the district no longer has go (children
            # first), then every part's rows are upserted (root first).
            for part in reversed(parts):
                if part.table == spec.root:
                    continue
                stab = state_table(part.table)
                for batch in chunked(keys):
                    conn.execute(
                        delete(stab).where(
                            stab.c.district_number == district, stab.c[part.link].in_(batch)
                        )
                    )
            for part in parts:
                stab = state_table(part.table)
                params = rows[part.table]
                counts[stab.name] = len(params)
                if not params:
                    continue
                pk = [c.name for c in stab.primary_key.columns]
                stmt = insert(stab)
                if s_engine.dialect.name in ("mysql", "mariadb"):
                    stmt = stmt.on_duplicate_key_update(
                        {c: stmt.inserted[c] for c in params[0] if c not in pk}
                    )
                else:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=pk,
                        set_={c: stmt.excluded[c] for c in params[0] if c not in pk},
                    )
                conn.execute(stmt, params)
        elapsed = time.perf_counter() - started
    finally:
        d_engine.dispose()
        s_engine.dispose()
    return elapsed, counts


# ------------------------------------------------------------------ checks


def check(spec, district: int, keys: list[int], result, url: str) -> list[str]:
    """Every key has one outcome; afterwards only failed keys still differ."""
    from selective_sync.db import make_engine
    from selective_sync.verification.engine import verify_object

    problems = []
    outcome_keys = [o.key for o in result.keys]
    if len(result.keys) != len(keys):
        problems.append(f"{len(result.keys)} outcomes for {len(keys)} keys")
    if set(outcome_keys) != set(keys) or len(set(outcome_keys)) != len(outcome_keys):
        problems.append("outcomes do not name each requested key exactly once")
    failed = {o.key for o in result.keys if o.outcome == "failed"}
    district_url = district_url_now()
    d_engine, s_engine = make_engine(district_url), make_engine(url)
    try:
        after = verify_object(d_engine, s_engine, spec, district, keys)
    finally:
        d_engine.dispose()
        s_engine.dispose()
    dirty = {issue.key for issue in after.issues}
    if dirty - failed:
        sample = sorted(dirty - failed)[:5]
        problems.append(f"{len(dirty - failed)} keys not failed still differ, e.g. {sample}")
    return problems


# ------------------------------------------------------------------ main


def bootstrap_rights(directory: Path) -> None:
    from selective_sync.rights import RightsStore

    remove_db(directory / "bench-rights.db")
    with RightsStore.from_settings() as store:
        store.bootstrap_admin(BENCH_USER)


def counts_of(result) -> Counter[str]:
    return Counter(str(o.outcome) for o in result.keys)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    set_environment(args.dir, args.district_url)
    sys.path.insert(0, str(ROOT))

    from selective_sync.db import mask_url
    from selective_sync.registry import get_object
    from selective_sync.settings import get_settings

    spec = get_object(args.object)
    manifest = ensure_demo(args)
    district = manifest["district"]["number"]
    keys, differ, nowhere = choose_keys(args, spec)
    server = None
    if args.state_url:
        # No file to copy: every run re-applies the change to its keys on the server.
        server = ServerState(args.state_url, spec, district)
        present = server_district_keys(args.district_url, spec)
        spares = spare_keys(manifest, spec, present, keys)
        table, assignment, _ = MUTATIONS[spec.name]
        print(
            f"district {mask_url(args.district_url)} ({dialect_of(args.district_url)}) -> "
            f"state {mask_url(args.state_url)} ({dialect_of(args.state_url)}); "
            f"{table} SET {assignment} for {len(differ):,} keys before every measured run; "
            f"1-key flows on keys {spares} (outside the N keys)"
        )

        def state_for(name: str, run_keys: list[int], requested=None) -> str:
            return server.prepare(name, run_keys, requested)

        warm_keys, one_key = [spares[1]], [spares[0]]
    else:
        template = make_template(args, spec, district, differ)

        def state_for(name: str, run_keys: list[int], requested=None) -> str:
            return fresh_state(args, template, name)

        one_key = [differ[0] if differ else keys[0]]
        warm_keys = [differ[-1] if differ else keys[-1]]
    bootstrap_rights(args.dir)
    settings = get_settings()
    print(
        f"{spec.name}: {len(keys):,} keys ({len(differ):,} made to differ, {nowhere:,} exist "
        f"nowhere); per_key_task_limit {settings.per_key_task_limit}, "
        f"max_workers {settings.max_workers}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    import_started = time.perf_counter()
    import flows.sync_request  # noqa: F401  (import time reported apart)

    import_s = time.perf_counter() - import_started
    phases = install_phase_timers()

    warm_s, warm_result, _ = run_flow(spec.name, warm_keys, state_for("warmup", warm_keys))
    print(f"warm-up flow (1 key, ephemeral API start-up): {warm_s:.2f} s", flush=True)

    ones = []
    for i in range(args.repeat):
        t1, result1, _ = run_flow(spec.name, one_key, state_for(f"one-{i}", one_key))
        ones.append(t1)
    t_1 = statistics.median(ones)
    print(f"1-key flow: {', '.join(f'{t:.2f}' for t in ones)} s → T_1 {t_1:.2f} s", flush=True)

    times = []
    for i in range(args.repeat):
        phases.reset()
        url_n = state_for(f"n-{i}", differ, keys)
        t_n, result, flow_run_id = run_flow(spec.name, keys, url_n)
        times.append(t_n)
        print(f"{len(keys):,}-key flow: {t_n:.2f} s", flush=True)
    t_n = statistics.median(times)
    breakdown = dict(phases.totals)
    calls = dict(phases.calls)

    problems = check(spec, district, keys, result, url_n)
    counts = counts_of(result)
    attempts = Counter(o.attempts for o in result.keys)
    if server:
        with state_url(args.state_url):
            planned, planned_text = planned_task_runs(len(keys))
    else:
        planned, planned_text = planned_task_runs(len(keys))
    recorded = recorded_task_runs(flow_run_id)

    ok_keys = [o.key for o in result.keys if o.outcome in ("synced", "unchanged")]
    base_url = state_for("baseline", differ, keys)
    base_s, base_rows = baseline(spec, district, ok_keys, base_url)
    base_problems = check_baseline(spec, district, ok_keys, base_url)

    per_key_ms = 1000 * (t_n - t_1) / (len(keys) - 1)
    rows = [
        ("object", spec.name),
        *(
            [
                (
                    "databases",
                    f"district {mask_url(args.district_url)} -> state {mask_url(args.state_url)}",
                )
            ]
            if server
            else []
        ),
        ("keys", f"{len(keys):,}"),
        ("outcomes", ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))),
        ("attempts", ", ".join(f"{k}: {v:,} keys" for k, v in sorted(attempts.items()))),
        ("import flows module", f"{import_s:.2f} s"),
        ("warm-up flow (API start-up)", f"{warm_s:.2f} s"),
        ("fixed cost T_1 (1-key flow)", f"{t_1:.2f} s"),
        ("flow wall time T_N", f"{t_n:.2f} s   (target < {TARGET_TOTAL_S:.0f} s)"),
        (
            "per key above fixed",
            f"{per_key_ms:.3f} ms   (target < {TARGET_PER_KEY_MS:.0f} ms)",
        ),
        (
            "baseline bulk upsert",
            f"{base_s:.2f} s for {len(ok_keys):,} keys ("
            + ", ".join(f"{t} {n:,}" for t, n in base_rows.items())
            + " rows)",
        ),
        (
            "ratio flow/baseline",
            f"{t_n / base_s:.1f}x   ((T_N - T_1)/baseline {(t_n - t_1) / base_s:.1f}x)",
        ),
        ("task runs planned", f"{planned} sync + 4 others: {planned_text}"),
        (
            "task runs recorded",
            f"{sum(recorded.values())}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(recorded.items())),
        ),
        ("flow thread (wall s/calls)", phase_text(breakdown, calls, FLOW_PHASES)),
        (
            "inside (summed s/calls)",
            phase_text(breakdown, calls, [k for k in breakdown if k not in FLOW_PHASES]),
        ),
        (
            "checks",
            "; ".join(problems + base_problems)
            or "every key has one outcome; "
            "verification after is clean except failed keys (flow and baseline)",
        ),
    ]
    failed = [o for o in result.keys if o.outcome == "failed"]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if failed:
        reasons = Counter(_shape(o.reason) for o in failed)
        print("failed reasons: " + "; ".join(f"{r} ×{n}" for r, n in reasons.most_common(4)))
    print(f"load average now {os.getloadavg()[0]:.2f} (the machine is shared: see --repeat)")
    if server:
        server.dispose()
    met = t_n < TARGET_TOTAL_S and per_key_ms < TARGET_PER_KEY_MS
    print(f"targets {'met' if met else 'MISSED'}")
    return 1 if problems or base_problems else 0


def dialect_of(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name()


def _shape(reason: str | None) -> str:
    """A reason with its numbers blanked, to group failures of the same kind."""
    return re.sub(r"\d+", "#", reason or "")


def check_baseline(spec, district: int, keys: list[int], url: str) -> list[str]:
    from selective_sync.db import make_engine
    from selective_sync.verification.engine import verify_object

    district_url = district_url_now()
    d_engine, s_engine = make_engine(district_url), make_engine(url)
    try:
        after = verify_object(d_engine, s_engine, spec, district, keys)
    finally:
        d_engine.dispose()
        s_engine.dispose()
    if after.issues:
        return [f"baseline left {len(after.issues)} keys differing"]
    return []


if __name__ == "__main__":
    sys.exit(main())
