"""Serve every deployment of prefect.yaml from this one process (no work pool, no worker).

The single-machine alternative for a small district: ``python -m flows.serve`` against a
Prefect server (``PREFECT_API_URL``). The deployments keep the names, descriptions,
parameters, schedules and concurrency limits of ``prefect.yaml`` (read from it, so the two
never drift apart); each flow run executes in a child process with this process's
environment, where the SELECTIVE_SYNC_* settings (database URLs, task runner) are read.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval, Schedule

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"


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
    return deployments


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
    args = parser.parse_args(argv)
    # Entrypoints are recorded relative to the working directory, and each run's child
    # process loads its flow from there: serve from the checkout wherever we were started.
    os.chdir(ROOT)
    serve(*load_deployments(), limit=args.limit)


if __name__ == "__main__":
    main()
