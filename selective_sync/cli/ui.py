"""``selective-sync ui``: the whole tool on this machine in one command.

It starts, on loopback, a Prefect server with its own home under the data directory
(``python -m flows.prefect_server``: ``prefect server start`` that retries a request its
SQLite database was too busy for), a process serving every deployment
(``python -m flows.serve``) and the report server (in this process, as
``selective-sync reports serve``), waits until all three answer, and prints the address to
open. Ctrl-C or SIGTERM stops everything. The core never imports Prefect or the flows: both
are started as child processes by module name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.text import Text

from ..errors import BadInput, StartupFailed
from .backend import refresh_ui
from .common import console

# Prefect's server on a busy two-core machine is healthy in 4-10 s, and serving the
# deployments imports every flow; give both time before calling it a failure.
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 10.0
CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    """A child process in its own process group, its output in a log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the group, wait, then SIGKILL what is left (flow-run children too)."""
        if self.alive():
            _signal_group(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        _signal_group(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def ui(
    port: Annotated[int, typer.Option("--port", help="Port of the Prefect UI and API.")] = 4200,
    reports_port: Annotated[
        int, typer.Option("--reports-port", help="Port of the report server.")
    ] = 8765,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
) -> None:
    """Start the tool (Prefect server and UI, every deployment, reports) until Ctrl-C."""
    from ..reports.server import make_server
    from ..settings import get_settings

    if port == reports_port:
        raise BadInput(f"--port and --reports-port are both {port}: give two ports")
    ensure_port_free(host, port, "--port")
    ensure_port_free(host, reports_port, "--reports-port")
    base = f"http://{_url_host(host)}:{port}"
    reports_url = f"http://{_url_host(host)}:{reports_port}"
    env = child_env(base, reports_url)
    # The reports are served by this process; their links must point at it.
    os.environ["SELECTIVE_SYNC_REPORTS_BASE_URL"] = reports_url
    settings = get_settings()
    home = settings.data_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env["PREFECT_HOME"] = str(home)

    stopping = threading.Event()
    children: list[Child] = []
    reports = make_server(host, reports_port, settings)
    with _stop_on_signals(stopping):
        try:
            threading.Thread(target=reports.serve_forever, daemon=True).start()
            console.print(Text(f"starting the Prefect server on {base} (home {home})"))
            children.append(start_child("prefect-server", server_args(host, port), env, home))
            health = f"{base}/api/health"
            wait_for("the Prefect server", lambda: _answers(health), children, stopping)
            console.print(Text("serving every deployment (python -m flows.serve)"))
            children.append(start_child("flows-serve", serve_args(), env, home))
            expected = expected_deployments()
            wait_for(
                "the served deployments",
                lambda: deployments_registered(base, expected),
                children,
                stopping,
            )
            wait_for("the report server", lambda: _answers(reports_url, any_status=True), children)
            refresh_ui(f"{base}/api")  # the CLI's requests into each View History table
            print_ready(base, reports_url, settings.data_dir)
            while not stopping.is_set():
                _check_alive(children)
                stopping.wait(1.0)
            console.print(Text("stopping..."))
        finally:
            # The deployments first: stopping them while the API still answers is quick
            # (with the server gone, their shutdown calls would retry for a long while).
            for child in reversed(children):
                child.stop()
            reports.shutdown()
            reports.server_close()


def ensure_port_free(host: str, port: int, option: str) -> None:
    """Refuse a port something already listens on, before anything is started."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        # As uvicorn and http.server bind: a port only in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BadInput(
                f"port {port} on {host} is already in use ({exc.strerror or exc}): "
                f"stop what uses it or choose another with {option}"
            ) from None


def child_env(base: str, reports_url: str) -> dict[str, str]:
    """This environment plus the API URL the UI is told and the report links' base."""
    env = dict(os.environ)
    env.update(
        # Set before the server starts: the UI calls the API at the address it is told,
        # which would otherwise be its own default and unreachable from another address.
        PREFECT_API_URL=f"{base}/api",
        PREFECT_UI_API_URL=f"{base}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        SELECTIVE_SYNC_REPORTS_BASE_URL=reports_url,
        # A run from the form starts within about a second of its Submit (Prefect's
        # default: look for scheduled runs every 10 s).
        PREFECT_RUNNER_POLL_FREQUENCY=env.get("PREFECT_RUNNER_POLL_FREQUENCY", "1"),
        # Server and flows are this one installation: no version check per process.
        PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED="false",
    )
    return env


def server_args(host: str, port: int) -> list[str]:
    # Prefect's server, answering for itself when its SQLite database was busy (instead of
    # a 503 the UI's Submit would show): flows/prefect_server.py.
    return [sys.executable, "-m", "flows.prefect_server", "--host", host, "--port", str(port)]


def serve_args() -> list[str]:
    return [sys.executable, "-m", "flows.serve"]


def start_child(name: str, args: list[str], env: dict[str, str], home: Path) -> Child:
    log = home / f"{name}.log"
    with log.open("wb") as handle:
        popen = subprocess.Popen(
            args,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own group: Ctrl-C reaches this process only, which stops the children in
            # order and takes their flow-run processes with them.
            start_new_session=True,
            cwd=CHECKOUT if (CHECKOUT / "flows").is_dir() else None,
        )
    return Child(name, popen, log)


def expected_deployments() -> int:
    """How many deployments prefect.yaml declares (flows.serve serves each of them)."""
    import yaml

    path = CHECKOUT / "prefect.yaml"
    if not path.is_file():
        return 1
    return len(yaml.safe_load(path.read_text()).get("deployments") or []) or 1


def deployments_registered(base: str, expected: int) -> bool:
    try:
        response = httpx.post(f"{base}/api/deployments/count", json={}, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and int(response.json()) >= expected


def wait_for(
    what: str,
    ready: Callable[[], bool],
    children: list[Child],
    stopping: threading.Event | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        _check_alive(children)
        if stopping is not None and stopping.is_set():
            raise typer.Exit(130)
        if time.monotonic() > deadline:
            logs = ", ".join(str(c.log) for c in children)
            raise StartupFailed(f"{what} did not answer within {timeout:.0f} s (logs: {logs})")
        time.sleep(0.3)


def print_ready(base: str, reports_url: str, data_dir: Path) -> None:
    lines = [
        "",
        "Selective Sync is ready. Open in a browser:",
        f"    {base}/",
        "  The Selective Sync form: Deployments > sync-records > Run > Custom run.",
        f"  Reports (the links in the runs' artifacts): {reports_url}",
        "  For the CLI in another shell:",
        f"    export PREFECT_API_URL={base}/api",
        f"    export SELECTIVE_SYNC_DATA_DIR={data_dir}",
        "  Ctrl-C stops everything.",
    ]
    for line in lines:
        # Never wrapped: the URLs and export lines are copied as printed.
        console.print(Text(line), soft_wrap=True)


def _check_alive(children: list[Child]) -> None:
    for child in children:
        if not child.alive():
            last = child.tail(1).strip()
            raise StartupFailed(
                f"{child.name} exited (code {child.popen.returncode}): {last or 'no output'} "
                f"(log: {child.log})"
            )


def _answers(url: str, any_status: bool = False) -> bool:
    try:
        response = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return False
    return any_status or response.status_code == 200


@contextlib.contextmanager
def _stop_on_signals(stopping: threading.Event):
    """SIGINT and SIGTERM set ``stopping`` instead of raising mid-way through start-up."""

    def handler(signum, frame) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
