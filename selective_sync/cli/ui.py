"""``selective-sync ui``: the whole tool on this machine in one command.

It starts, on loopback, a Prefect server with its own home under the data directory
(``python -m flows.prefect_server``: ``prefect server start`` that retries a request its
SQLite database was too busy for), a process serving every deployment
(``python -m flows.serve``) and the report server (in this process, as
``selective-sync reports serve``), waits until all three answer, and prints the address to
open. Ctrl-C or SIGTERM stops everything.

With sign-in (the default), nginx (Debian's package) listens on ``--port`` and
``--reports-port`` and asks for a user name and password; the Prefect server and the report
server listen on loopback ports of their own and answer nginx (its secret, the user it
signed in) and the service token only (``flows.gateway``, ``selective_sync.identity``).
Two demo users are made: a state administrator and a district-275 user; their passwords
are printed. ``--no-sign-in`` starts the tool as before: no sign-in, the *Requested by*
field says who acts. The core never imports Prefect or the flows: both
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
    sign_in: Annotated[
        bool,
        typer.Option(
            "--sign-in/--no-sign-in",
            help="Put nginx's sign-in in front (demo users printed); off: no sign-in.",
        ),
    ] = True,
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
    proxy = SignIn.prepare(host, port, reports_port) if sign_in else None
    env = child_env(base, reports_url, proxy)
    # The reports are served by this process; their links must point at it.
    os.environ["SELECTIVE_SYNC_REPORTS_BASE_URL"] = reports_url
    if proxy is not None:
        os.environ.update(proxy.own_env())
        port, reports_port = proxy.prefect_port, proxy.reports_port
    else:
        os.environ["SELECTIVE_SYNC_SIGN_IN"] = "off"
    inner_host = proxy.host if proxy is not None else host
    settings = get_settings()
    home = settings.data_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    env["PREFECT_HOME"] = str(home)

    stopping = threading.Event()
    children: list[Child] = []
    users = proxy.demo_users(settings) if proxy is not None else []
    reports = make_server(inner_host, reports_port, settings)
    with _stop_on_signals(stopping):
        try:
            threading.Thread(target=reports.serve_forever, daemon=True).start()
            internal = f"http://{_url_host(inner_host)}:{port}"
            console.print(Text(f"starting the Prefect server on {internal} (home {home})"))
            children.append(start_child("prefect-server", server_args(inner_host, port), env, home))
            health = f"{internal}/api/health"
            wait_for("the Prefect server", lambda: _answers(health), children, stopping)
            console.print(Text("serving every deployment (python -m flows.serve)"))
            children.append(start_child("flows-serve", serve_args(), env, home))
            expected = expected_deployments()
            wait_for(
                "the served deployments",
                lambda: deployments_registered(internal, expected),
                children,
                stopping,
            )
            if proxy is not None:
                console.print(Text(f"starting nginx's sign-in on {base} and {reports_url}"))
                children.append(start_child("nginx", proxy.nginx(settings, users), env, home))
            wait_for("the report server", lambda: _answers(reports_url, any_status=True), children)
            wait_for("the UI", lambda: _answers(base, any_status=True), children)
            refresh_ui(f"{internal}/api")  # the CLI's requests into each View History table
            print_ready(base, reports_url, settings.data_dir, internal, users)
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


def child_env(base: str, reports_url: str, proxy: SignIn | None = None) -> dict[str, str]:
    """This environment plus the API URL the UI is told and the report links' base (and,
    with sign-in, the secret, the token and the servers' own loopback address)."""
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
    if proxy is not None:
        env.update(proxy.own_env())
        # The served deployments reach the server directly, with the service token.
        env["PREFECT_API_URL"] = f"{proxy.internal}/api"
    else:
        env["SELECTIVE_SYNC_SIGN_IN"] = "off"
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
    token = os.environ.get("PREFECT_API_AUTH_STRING")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(f"{base}/api/deployments/count", json={}, headers=headers, timeout=5)
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


def print_ready(
    base: str, reports_url: str, data_dir: Path, internal: str, users: list | None = None
) -> None:
    lines = [
        "",
        "Selective Sync is ready. Open in a browser:",
        f"    {base}/",
        "  The Selective Sync form: Deployments > sync-records > Run > Custom run.",
        f"  Reports (the links in the runs' artifacts): {reports_url}",
    ]
    if users:
        lines.append("  Sign in as (user name / password):")
        lines += [f"    {u.name} / {u.password}   ({u.rights} on {u.scope})" for u in users]
        token = data_dir / "sign-in" / "service-token"
        lines += [
            "  For the CLI in another shell (it acts as your OS user, not a signed-in one):",
            f"    export PREFECT_API_URL={internal}/api",
            f"    export PREFECT_API_AUTH_STRING=$(cat {token})",
        ]
    else:
        lines += ["  For the CLI in another shell:", f"    export PREFECT_API_URL={base}/api"]
    lines += [f"    export SELECTIVE_SYNC_DATA_DIR={data_dir}", "  Ctrl-C stops everything."]
    for line in lines:
        # Never wrapped: the URLs and export lines are copied as printed.
        console.print(Text(line), soft_wrap=True)


@dataclass
class SignIn:
    """The sign-in of one start: nginx on the public ports, the servers on loopback ports
    of their own, a fresh proxy secret and service token."""

    host: str
    public_host: str
    public_port: int
    public_reports_port: int
    prefect_port: int
    reports_port: int
    secret: str
    token: str

    @classmethod
    def prepare(cls, host: str, port: int, reports_port: int) -> SignIn:
        from ..identity import new_secret
        from ..identity.nginx import NGINX

        if not Path(NGINX).exists():
            raise BadInput(
                f"{NGINX} is missing: the sign-in needs Debian's nginx (scripts/bootstrap.sh, "
                "or apt-get install nginx); or start without sign-in: selective-sync ui "
                "--no-sign-in"
            )
        inner = "127.0.0.1" if ":" not in host else "::1"
        return cls(
            inner,
            host,
            port,
            reports_port,
            free_port(inner),
            free_port(inner),
            new_secret(),
            new_secret(),
        )

    @property
    def internal(self) -> str:
        return f"http://{_url_host(self.host)}:{self.prefect_port}"

    def own_env(self) -> dict[str, str]:
        return {
            "SELECTIVE_SYNC_SIGN_IN": "proxy",
            "SELECTIVE_SYNC_PROXY_SECRET": self.secret,
            "SELECTIVE_SYNC_SERVICE_TOKEN": self.token,
            # What Prefect's client sends (Basic of it, on HTTP and the events websocket).
            "PREFECT_API_AUTH_STRING": self.token,
        }

    def demo_users(self, settings) -> list:
        """The two demo users with their rights granted (audited); the token written for
        the operator's CLI."""
        from ..identity.users import demo_users, grant_demo_rights
        from ..rights import RightsStore

        folder = settings.data_dir / "sign-in"
        users = demo_users(folder)
        with RightsStore.from_settings(settings) as store:
            grant_demo_rights(store, users)
        _write_private(folder / "service-token", self.token + "\n")
        return users

    def nginx(self, settings, users: list) -> list[str]:
        """Write nginx's configuration (this start's secret, the users' password hashes);
        the command that runs it."""
        from ..identity.nginx import Upstream, nginx_args, write_config

        root = settings.data_dir / "sign-in" / "nginx"
        upstreams = [
            Upstream(self.public_host, self.public_port, self.internal),
            Upstream(
                self.public_host,
                self.public_reports_port,
                f"http://{_url_host(self.host)}:{self.reports_port}",
            ),
        ]
        conf = write_config(root, upstreams, self.secret, {u.name: u.password for u in users})
        return nginx_args(conf, root)


def free_port(host: str) -> int:
    """A port nothing listens on now (for a server behind the sign-in)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


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
