"""The Prefect server itself on PostgreSQL, with the district on PostgreSQL and the state
on MariaDB: `prefect server start` on a new PostgreSQL database (asyncpg, which Prefect
depends on), the selective_sync flow run against it, its Sync History artifacts read back.

Everything is made for this module (unique database names) and dropped afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbservers import server_database
from sqlalchemy.engine import make_url

from .harness import (
    ADMIN,
    PREFECT,
    REPO,
    Server,
    clean_env,
    fixable,
    free_port,
    start,
    wait_healthy,
)

DISTRICT = 275


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory) -> Iterator[tuple[Server, str]]:
    """`prefect server start` whose database is a fresh PostgreSQL database."""
    base = tmp_path_factory.mktemp("prefect-on-postgres")
    home, logdir = base / "home", base / "logs"
    home.mkdir()
    logdir.mkdir()
    with server_database("postgresql") as url:
        asyncpg_url = make_url(url).set(drivername="postgresql+asyncpg")
        port = free_port()
        env = clean_env(
            PREFECT_HOME=str(home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=asyncpg_url.render_as_string(
                hide_password=False
            ),
        )
        proc = start(
            "server",
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env,
            logdir,
        )
        instance = Server(f"http://127.0.0.1:{port}", home, logdir, proc)
        try:
            wait_healthy(instance, timeout=180)  # first start runs Prefect's migrations
            yield instance, url
        finally:
            for child in reversed(instance.procs):
                child.stop()
            proc.stop()


@pytest.fixture(scope="module")
def databases(tmp_path_factory) -> Iterator[tuple[Path, str, str, dict]]:
    """District on PostgreSQL, state (and rights) on MariaDB, holding a small demo."""
    from selective_sync.demo import generate_demo
    from selective_sync.rights import RightsStore

    data = tmp_path_factory.mktemp("pg-maria-data")
    with server_database("postgresql") as district, server_database("mariadb") as state:
        manifest = generate_demo(data, persons=200, seed=3, district_url=district, state_url=state)
        with RightsStore(state, create_missing=True) as store:
            store.bootstrap_admin(ADMIN)
        yield data, district, state, json.loads(manifest.to_json())


def test_selective_sync_flow_on_a_postgres_backed_server(pg_server, databases):
    server, prefect_db = pg_server
    data, district_url, state_url, manifest = databases
    synced = fixable(manifest, "PersonIdentity")[:3]
    keys = [*synced, 10**8]
    env = server.env(
        SELECTIVE_SYNC_DATA_DIR=str(data),
        SELECTIVE_SYNC_DISTRICT_URL=district_url,
        SELECTIVE_SYNC_STATE_URL=state_url,
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    code = (
        "import sys, json\n"
        "from flows.sync_request import selective_sync\n"
        "result = selective_sync(object='PersonIdentity', ids=sys.argv[1], "
        "requested_by=sys.argv[2])\n"
        "print(json.dumps({str(k.key): str(k.outcome) for k in result.keys}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, ", ".join(map(str, keys)), ADMIN],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + server.logs()
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed == {**{str(k): "synced" for k in synced}, str(10**8): "not_found"}

    (run,) = [r for r in server.flow_runs({}) if r["parent_task_run_id"] is None]
    assert run["state"]["type"] == "COMPLETED"
    keys_found = {a["key"] for a in server.artifacts([run["id"]])}
    assert {
        f"sync-request-{DISTRICT}",
        f"sync-outcomes-{DISTRICT}",
        f"sync-progress-{DISTRICT}",
        f"sync-report-pdf-{DISTRICT}",
        f"sync-report-docx-{DISTRICT}",
    } <= keys_found, keys_found
    (table,) = server.artifacts([run["id"]], key={"any_": [f"sync-outcomes-{DISTRICT}"]})
    rows = {int(row["key"]): row["outcome"] for row in json.loads(table["data"])}
    assert rows == {**dict.fromkeys(synced, "synced"), 10**8: "not_found"}
    (history,) = server.artifacts([run["id"]], key={"any_": [f"sync-request-{DISTRICT}"]})
    assert f"| Records | 3/{len(keys)} |" in history["data"], history["data"]
    assert f"| Requested by | {ADMIN} |" in history["data"]

    # The server really keeps its state in that PostgreSQL database.
    conninfo = make_url(prefect_db)
    with psycopg.connect(
        host=conninfo.host, port=conninfo.port, user=conninfo.username, dbname=conninfo.database
    ) as conn:
        stored = conn.execute("SELECT count(*) FROM artifact WHERE flow_run_id = %s", (run["id"],))
        assert stored.fetchone()[0] >= 5
