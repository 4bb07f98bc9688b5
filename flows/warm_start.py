"""Flow runs start warm: forked from a process that has Prefect and the flows imported.

Prefect (3.9.1) starts every flow run of ``python -m flows.serve`` (the Runner) as a new
interpreter, ``python -m prefect.engine`` (``EngineCommandStarter``), and so does its
process worker for a deployment whose command is that (prefect.yaml sets it): each run
imports Prefect and the flow again, about 2 s of the 2.4 s a served run took to start on
this machine. :func:`install` (called by flows.serve and flows.worker) routes that one
command through multiprocessing's *forkserver* instead: a server process started once,
with Prefect's engine and the flow modules imported (``set_forkserver_preload``), forks a
child per run. The child takes the environment and working directory Prefect built for
the run and runs Prefect's own entry point (``prefect.engine`` as ``__main__``), so the run
is the one Prefect would have started; only the interpreter start and the imports are
saved.

The hook is the module reference ``prefect.runner._starter_engine.run_process``, which
Prefect's ``EngineCommandStarter`` documents as the place to override; any other command
(a deployment's own, an isolated process group) goes to Prefect's ``run_process``
unchanged. The forkserver forks a process with one thread and no event loop (the preload
only imports), as ``fork`` needs; Prefect resets its own services after a fork.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

ENGINE_MODULE = "prefect.engine"
# What each forked child needs, imported once by the forkserver: the engine, what it
# imports only once a run has started (seen in a child's sys.modules), and this module
# (the child's target is found here).
PRELOAD = [
    ENGINE_MODULE,
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.concurrency.sync",
    "prefect.utilities.visualization",
    "anyio._backends._asyncio",
    __name__,
]
_CONTEXT = multiprocessing.get_context("forkserver")
_prefect_run_process: Callable[..., Any] | None = None


def entrypoint_modules(prefect_yaml: Path) -> list[str]:
    """The modules of the deployments' flows in a prefect.yaml (``flows.reconcile`` of
    ``flows.reconcile:reconcile``), once each."""
    import yaml

    spec = yaml.safe_load(prefect_yaml.read_text())
    entries = spec.get("deployments") or []
    modules = (e["entrypoint"].partition(":")[0] for e in entries if e.get("entrypoint"))
    return list(dict.fromkeys(modules))


def install(modules: Iterable[str]) -> None:
    """Start the forkserver with Prefect's engine and ``modules`` imported (now, so the first
    run does not wait for it), and start served runs from it from now on."""
    global _prefect_run_process
    from prefect.runner import _starter_engine  # the Runner's, in this process only

    _CONTEXT.set_forkserver_preload([*PRELOAD, *modules])
    forkserver.ensure_running()
    if _prefect_run_process is None:
        _prefect_run_process = _starter_engine.run_process
        _starter_engine.run_process = run_process


def is_engine_command(command: list[str]) -> bool:
    """``[python, "-m", "prefect.engine"]``: the command Prefect starts a served run with."""
    return command[1:] == ["-m", ENGINE_MODULE]


async def run_process(
    command: list[str],
    *,
    stream_output: Any = False,
    task_status: anyio.abc.TaskStatus | None = None,
    task_status_handler: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Prefect's ``run_process`` contract: start, report the process, wait for its exit."""
    if not is_engine_command(command) or set(kwargs) - {"env", "cwd"}:
        assert _prefect_run_process is not None
        return await _prefect_run_process(
            command,
            stream_output=stream_output,
            task_status=task_status,
            task_status_handler=task_status_handler,
            **kwargs,
        )
    # The child writes to the stdout and stderr this process had when the forkserver
    # started: the same place Prefect streams a run's output to.
    process = _CONTEXT.Process(
        target=run_engine, args=(dict(kwargs.get("env") or {}), kwargs.get("cwd"))
    )
    process.start()
    if task_status is not None:
        task_status.started(task_status_handler(process) if task_status_handler else process.pid)
    await anyio.to_thread.run_sync(process.join)
    return process


def run_engine(env: Mapping[str, str], cwd: str | Path | None) -> None:
    """In the forked child: become the process Prefect would have started, then run it."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    sys.argv = [ENGINE_MODULE]  # the engine takes a flow run id from argv[1] if present
    # Prefect read its settings when the forkserver imported it: read them again from the
    # run's environment, as the engine's own process would have.
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import Settings

    with (
        SettingsContext(profile=get_settings_context().profile, settings=Settings()),
        warnings.catch_warnings(),
    ):
        # runpy warns that the module is imported already: it is, by the forkserver, and
        # running it as __main__ is what `python -m` would do.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
        runpy.run_module(ENGINE_MODULE, run_name="__main__", alter_sys=True)
