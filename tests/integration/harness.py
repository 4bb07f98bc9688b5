"""Processes an operator would run (``prefect server start``, work pool set-up, workers,
``prefect deployment run``), started, watched and stopped for the integration tests.

Every process is started in its own session (process group) and stopped by the fixture
that started it: SIGTERM to the group, a wait, then SIGKILL to whatever is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
POOL = "selective-sync"
ADMIN = "test-admin"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any PREFECT_/SELECTIVE_SYNC_ setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "SELECTIVE_SYNC_"))
        # pytest's own markers must not leak into children
        and k != "PYTEST_CURRENT_TEST"
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Proc:
    """A process started for a test, with its output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group, wait, then SIGKILL what is left of it."""
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Children (flow-run processes, uvicorn) may outlive the leader: kill the group.
        _signal_group(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start(name: str, args: list[str], env: Mapping[str, str], logdir: Path, **kw) -> Proc:
    log = logdir / f"{name}.log"
    handle = log.open("wb")
    try:
        popen = subprocess.Popen(
            args,
            env=dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kw,
        )
    finally:
        handle.close()
    return Proc(name, popen, log)


class RetryTransport(httpx.HTTPTransport):
    """Retries 503/429 like Prefect's own client does: a SQLite-backed server answers 503
    while its database is locked by a burst of writes (workers, flow runs, events)."""

    RETRY = frozenset({429, 502, 503})

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(8):
            response = super().handle_request(request)
            if response.status_code not in self.RETRY:
                return response
            response.read()
            response.close()
            time.sleep(min(0.25 * 2**attempt, 4))
        return super().handle_request(request)


@dataclass
class Server:
    """A running Prefect server, with the environment its clients need."""

    url: str
    home: Path
    logdir: Path
    proc: Proc
    procs: list[Proc] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a client process of this server (its own PREFECT_HOME)."""
        return clean_env(PREFECT_API_URL=self.api, PREFECT_HOME=str(self.home), **extra)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=30, transport=RetryTransport())

    def run(self, args: list[str], env: Mapping[str, str] | None = None, **kw):
        """Run a command to completion (a CLI call), output captured."""
        return subprocess.run(
            args,
            env=dict(env or self.env()),
            capture_output=True,
            text=True,
            timeout=kw.pop("timeout", 180),
            stdin=subprocess.DEVNULL,
            **kw,
        )

    def start(self, name: str, args: list[str], env: Mapping[str, str], **kw) -> Proc:
        """Start a long-running process; the server fixture stops it at the latest."""
        proc = start(name, args, env, self.logdir, **kw)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in [self.proc, *self.procs])

    # ---------------------------------------------------------------- REST helpers

    def deployment_id(self, full_name: str) -> str:
        flow_name, deployment = full_name.split("/")
        with self.http() as client:
            response = client.get(f"/deployments/name/{flow_name}/{deployment}")
            response.raise_for_status()
            return response.json()["id"]

    def create_run(self, full_name: str, parameters: dict, **body: Any) -> httpx.Response:
        with self.http() as client:
            return client.post(
                f"/deployments/{self.deployment_id(full_name)}/create_flow_run",
                json={"parameters": parameters, **body},
            )

    def wait(self, run_id: str, timeout: float = 180) -> dict:
        """The flow run once it reaches a terminal state."""
        deadline = time.monotonic() + timeout
        with self.http() as client:
            while True:
                run = client.get(f"/flow_runs/{run_id}").json()
                state = (run.get("state") or {}).get("type")
                if state in TERMINAL:
                    return run
                if time.monotonic() > deadline:
                    pytest.fail(f"flow run {run_id} still {state} after {timeout}s\n{self.logs()}")
                time.sleep(0.5)

    def artifacts(self, run_ids: list[str], **filters: Any) -> list[dict]:
        body = {"artifacts": {"flow_run_id": {"any_": run_ids}, **filters}, "limit": 200}
        with self.http() as client:
            response = client.post("/artifacts/filter", json=body)
            response.raise_for_status()
            return response.json()

    def flow_runs(self, body: dict) -> list[dict]:
        with self.http() as client:
            response = client.post("/flow_runs/filter", json={"limit": 200, **body})
            response.raise_for_status()
            return response.json()

    def logs_of(self, run_id: str) -> str:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "sort": "TIMESTAMP_ASC"}
        with self.http() as client:
            response = client.post("/logs/filter", json=body)
            response.raise_for_status()
            return "\n".join(entry["message"] for entry in response.json())


def wait_healthy(server: Server, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.popen.poll() is not None:
            pytest.fail(f"prefect server exited early:\n{server.proc.tail()}")
        try:
            if httpx.get(f"{server.api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"prefect server not healthy after {timeout}s:\n{server.proc.tail()}")


@dataclass
class DemoData:
    """A demo district copy the worker syncs, with its rights bootstrapped."""

    dir: Path
    manifest: dict

    def env(self) -> dict[str, str]:
        return {"SELECTIVE_SYNC_DATA_DIR": str(self.dir)}


def fixable(manifest: dict, name: str, kinds=("missing_at_state", "mismatched")) -> list[int]:
    """Keys of ``kinds`` the demo seeded for ``name`` that a plain sync can fix."""
    refused = manifest["will_fail"].get(name, {})
    bad = set(refused.get("parent_missing", [])) | set(refused.get("unmapped_code", []))
    return [k for kind in kinds for k in manifest[name][kind] if k not in bad]


def verify_keys(data_dir: Path, name: str, keys: list[int] | None = None):
    """Verification of ``keys`` (or every key) of district 275, straight from the databases."""
    from selective_sync.db import make_engine
    from selective_sync.registry import get_object
    from selective_sync.settings import sqlite_url
    from selective_sync.verification.engine import verify_object

    district = make_engine(sqlite_url(data_dir / "district.db"))
    state = make_engine(sqlite_url(data_dir / "state.db"))
    try:
        return verify_object(district, state, get_object(name), 275, keys)
    finally:
        district.dispose()
        state.dispose()
