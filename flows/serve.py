"""Serve every deployment of prefect.yaml from this one process (no work pool, no worker).

The single-machine alternative for a small district: ``python -m flows.serve`` against a
Prefect server (``PREFECT_API_URL``). The deployments keep the names, descriptions,
parameters, schedules and concurrency limits of ``prefect.yaml`` (read from it, so the two
never drift apart); each flow run executes in a child process with this process's
environment, where the SELECTIVE_SYNC_* settings (database URLs, task runner) are read.

The child is forked from a process that has Prefect and the flows imported
(``flows.warm_start``), not a new interpreter: a run starts in a fraction of a second. At
most ``--limit`` runs at once (default: Prefect's PREFECT_RUNNER_PROCESS_LIMIT, 5); more
wait Scheduled for a slot. Scheduled runs are looked for every
PREFECT_RUNNER_POLL_FREQUENCY seconds (``selective-sync ui`` and deployments/serve.sh set
1 s: a run starts within about a second of its Submit).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.logging import get_logger
from prefect.runner import Runner
from prefect.schedules import Cron, Interval, Schedule

from flows import warm_start
from selective_sync.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"
# On Ctrl-C or SIGTERM the runner pauses the deployments and cancels its runs through the
# API; with the API gone those calls retry for minutes (measured: 315 s). Past this grace
# the process exits anyway.
STOP_GRACE_S = 10.0
log = get_logger("serve")


def load_deployments(path: Path = PREFECT_YAML) -> list[RunnerDeployment]:
    """One served deployment per entry of ``prefect.yaml``, same name and schedules."""
    spec = yaml.safe_load(path.read_text())
    deployments = []
    for entry in spec.get("deployments") or []:
        flow = _flow(entry["entrypoint"])
        deployments.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                tags=entry.get("tags"),
                parameters=entry.get("parameters"),
                schedules=[_schedule(s) for s in entry.get("schedules") or []],
                concurrency_limit=entry.get("concurrency_limit"),
                enforce_parameter_schema=entry.get("enforce_parameter_schema", True),
                # Runs import flows.x as a module, like the worker deployments (see
                # prefect.yaml).
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    if get_settings().sign_in == "proxy":
        for deployment in deployments:
            without_requested_by(deployment)
    return deployments


def without_requested_by(deployment: RunnerDeployment) -> None:
    """With sign-in, the forms lose *Requested by*: the run acts as the signed-in user the
    gateway stamps on it (flows/gateway.py), whatever a parameter would say."""
    schema = deployment._parameter_openapi_schema
    schema.properties.pop("requested_by", None)
    if schema.required:
        schema.required = [name for name in schema.required if name != "requested_by"]


def _flow(entrypoint: str) -> Flow:
    """The flow of a module-path entrypoint such as ``flows.reconcile:reconcile``."""
    module, _, name = entrypoint.partition(":")
    return getattr(importlib.import_module(module), name)


def _schedule(spec: dict[str, Any]) -> Schedule:
    active = spec.get("active", True)
    if "cron" in spec:
        return Cron(spec["cron"], timezone=spec.get("timezone"), active=active)
    if "interval" in spec:
        return Interval(spec["interval"], timezone=spec.get("timezone"), active=active)
    raise ValueError(f"unsupported schedule in prefect.yaml: {spec}")


def main(argv: list[str] | None = None) -> None:
    """Serve every deployment until interrupted (Ctrl-C or SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__)
    parser.add_argument(
        "--limit", type=int, default=None, help="At most this many flow runs at once."
    )
    parser.add_argument(
        "--deployments",
        type=Path,
        default=PREFECT_YAML,
        help="The prefect.yaml whose deployments to serve (default: the checkout's).",
    )
    args = parser.parse_args(argv)
    path = args.deployments.resolve()
    # Entrypoints are recorded relative to the working directory, and each run's child
    # process loads its flow from there: serve from the checkout wherever we were started.
    os.chdir(ROOT)
    serve(load_deployments(path), limit=args.limit, preload=warm_start.entrypoint_modules(path))


def serve(
    deployments: list[RunnerDeployment], limit: int | None = None, preload: list[str] = ()
) -> None:
    """``prefect.serve`` with a bounded shutdown (at most STOP_GRACE_S after a signal), its
    runs started warm with the ``preload`` modules imported."""
    # Prefect's default limit unless one is given (None would mean no limit at all: a
    # burst of requests would start a process for each at once).
    runner = _BoundedRunner(pause_on_shutdown=True, **({"limit": limit} if limit else {}))
    warm_start.install(preload)
    for deployment in deployments:
        runner.add_deployment(deployment)
    signal.signal(signal.SIGINT, _interrupt)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    log.info("Serving %s deployments: %s", len(deployments), names)
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        log.info("Interrupted: stopped serving")


class _BoundedRunner(Runner):
    def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
        _exit_after_grace()
        super().handle_sigterm(*args, **kwargs)


def _interrupt(signum: int, frame: Any) -> None:
    _exit_after_grace()
    signal.default_int_handler(signum, frame)


def _exit_after_grace() -> None:
    def force() -> None:
        log.error(
            "Not stopped %.0f s after the signal (is the Prefect API down?): exiting", STOP_GRACE_S
        )
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(STOP_GRACE_S, force)
    timer.daemon = True
    timer.start()


if __name__ == "__main__":
    main()
