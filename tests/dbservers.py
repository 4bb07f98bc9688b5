"""Real PostgreSQL / MariaDB databases for tests: one uniquely named database per use.

    with server_database("postgresql") as url:   # postgresql+psycopg://...
        ...
    with server_database("mariadb") as url:      # mysql+pymysql://...
        ...

The server is started if it is not running. When it still cannot be reached the test is
skipped, except under CI (``CI=true``), where an unreachable server is a failure.
Connection details come from ``TEST_PG_HOST/PORT/USER/PASSWORD`` and
``TEST_MARIADB_HOST/PORT/USER/PASSWORD`` (defaults: 127.0.0.1, postgres / root, no password).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy.engine import URL

Kind = Literal["postgresql", "mariadb"]

START_TIMEOUT_S = 30.0


def _params(kind: Kind) -> dict:
    prefix = "TEST_PG_" if kind == "postgresql" else "TEST_MARIADB_"
    return {
        "host": os.environ.get(prefix + "HOST", "127.0.0.1"),
        "port": int(os.environ.get(prefix + "PORT", "5432" if kind == "postgresql" else "3306")),
        "user": os.environ.get(prefix + "USER", "postgres" if kind == "postgresql" else "root"),
        "password": os.environ.get(prefix + "PASSWORD") or None,
    }


def _connect_admin(kind: Kind):
    """A raw autocommit connection to the server's maintenance database."""
    p = _params(kind)
    if kind == "postgresql":
        import psycopg

        return psycopg.connect(
            host=p["host"],
            port=p["port"],
            user=p["user"],
            password=p["password"],
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )
    import pymysql

    return pymysql.connect(
        host=p["host"],
        port=p["port"],
        user=p["user"],
        password=p["password"] or "",
        autocommit=True,
        connect_timeout=5,
    )


def _start_server(kind: Kind) -> None:
    # Best effort: the commands that start the servers installed on these machines.
    if kind == "postgresql":
        conf = Path("/etc/postgresql")
        for version in sorted(os.listdir(conf)) if conf.is_dir() else []:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                capture_output=True,
                check=False,
            )
    else:
        run_dir = Path("/run/mysqld")
        run_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "mysql:mysql", str(run_dir)], capture_output=True, check=False)
        subprocess.run(
            [
                "start-stop-daemon", "--start", "--oknodo", "--background",
                "--exec", "/usr/sbin/mariadbd",
            ],
            capture_output=True,
            check=False,
        )  # fmt: skip


def _admin_connection(kind: Kind):
    """Connect, starting the server once if needed; skip (or fail under CI) if impossible."""
    try:
        return _connect_admin(kind)
    except Exception as first:  # driver-specific connection errors
        error: Exception = first
    try:
        _start_server(kind)
    except OSError as exc:  # the start commands are not installed here
        error = exc
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            return _connect_admin(kind)
        except Exception as exc:
            error = exc
            time.sleep(0.5)
    message = f"{kind} server not reachable at {_params(kind)['host']}: {error}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def server_database(kind: Kind) -> Iterator[str]:
    """Create a uniquely named database on ``kind``'s server, yield its URL, then drop it."""
    name = f"sstest_{uuid.uuid4().hex[:16]}"  # only [a-z0-9_]: safe to put in DDL as-is
    p = _params(kind)
    conn = _admin_connection(kind)
    try:
        with conn.cursor() as cur:
            if kind == "postgresql":
                cur.execute(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
            else:
                cur.execute(
                    f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
    finally:
        conn.close()
    drivername = "postgresql+psycopg" if kind == "postgresql" else "mysql+pymysql"
    url = URL.create(
        drivername,
        username=p["user"],
        password=p["password"],
        host=p["host"],
        port=p["port"],
        database=name,
        query={"charset": "utf8mb4"} if kind == "mariadb" else {},
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        conn = _admin_connection(kind)
        try:
            with conn.cursor() as cur:
                if kind == "postgresql":
                    # FORCE: a test that forgot to dispose an engine must not leak the database.
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
