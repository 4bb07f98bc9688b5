"""Shared helpers of the security suite: the CLI (in a real process or in this one), flow
runs with their run ids, and closing the flows' cached engines before a database is dropped."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "flows.cli"]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The one ``error: ...`` line on stderr (asserts there is exactly one, no traceback)."""
        assert self.returncode != 0, (self.stdout, self.stderr)
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert "Traceback" not in self.stderr and "Traceback" not in self.stdout, self.stderr
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("error: "), self.stderr
        return lines[0]


def cli_process(*args: str, env_extra: dict[str, str] | None = None) -> CliResult:
    """``selective-sync ARGS`` in its own process, with this test's SELECTIVE_SYNC_* env and,
    when the session's Prefect test API is running, pointed at it (no ephemeral API)."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env_extra or {})}
    api = PREFECT_API_URL.value()
    if api:
        env["PREFECT_API_URL"] = api
    proc = subprocess.run(
        CLI + list(args), capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


_registered = False


def cli_in_process(*args: str) -> CliResult:
    """``selective-sync ARGS`` run in this process (the same Typer app and error handling as
    the console script, without paying a Python start-up per call)."""
    global _registered
    from rich.console import Console

    from flows import cli
    from selective_sync.cli import common

    if not _registered:
        cli.register()
        _registered = True
    out, err = io.StringIO(), io.StringIO()
    code = 0
    saved = (common.console, common.err_console, sys.argv)
    # Commands set PREFECT_LOGGING_LEVEL for their own process: not for the test session's.
    saved_env = {k: os.environ.get(k) for k in ("PREFECT_LOGGING_LEVEL",)}
    # The command modules imported ``console`` by name: patch theirs too.
    modules = [
        m
        for m in sys.modules.values()
        if getattr(m, "__name__", "").startswith("selective_sync.cli.")
    ]
    patched = [(m, m.console) for m in modules if hasattr(m, "console")]
    patched_err = [(m, m.err_console) for m in modules if hasattr(m, "err_console")]
    try:
        console = Console(file=out, width=200, no_color=True)
        err_console = Console(file=err, width=200, no_color=True)
        for m, _ in patched:
            m.console = console
        for m, _ in patched_err:
            m.err_console = err_console
        sys.argv = ["selective-sync", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                common.run_cli(cli.app)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for m, c in patched:
            m.console = c
        for m, c in patched_err:
            m.err_console = c
        common.console, common.err_console, sys.argv = saved
        # A command module first imported during the run (the CLI imports them lazily)
        # took the patched consoles by name: give it the real ones back, or its later
        # output goes into this run's buffers.
        for m in list(sys.modules.values()):
            if getattr(m, "console", None) is console:
                m.console = saved[0]
            if getattr(m, "err_console", None) is err_console:
                m.err_console = saved[1]
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return CliResult(code, out.getvalue(), err.getvalue())


def run_flow(flow, **parameters):
    """Run ``flow``; (flow run id, its final state, its result or the exception raised)."""
    state = flow(**parameters, return_state=True)
    return (
        str(state.state_details.flow_run_id),
        state,
        state.result(raise_on_failure=False),
    )


def release_engines(*urls: str) -> None:
    """Close the flows' cached engines' pools, so the test databases can be dropped."""
    from tasks.engines import engine_for

    for url in urls:
        engine_for(url).dispose()
    engine_for.cache_clear()
