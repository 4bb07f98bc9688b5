#!/usr/bin/env bash
# Single-machine alternative to a work pool and workers: one process serves every
# deployment of prefect.yaml (same names, parameters and schedules) and runs their
# flow runs itself. For a small district with no worker set-up.
#
#   export PREFECT_API_URL=http://127.0.0.1:4200/api    # a running `prefect server start`
#   deployments/serve.sh [--limit N]
set -euo pipefail

PYTHON="${PYTHON:-python}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Heartbeats of every flow run, for the zombie automation (python -m flows.zombies).
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-60}"
# Look for scheduled runs every second (Prefect's default: 10 s).
export PREFECT_RUNNER_POLL_FREQUENCY="${PREFECT_RUNNER_POLL_FREQUENCY:-1}"
exec "$PYTHON" -m flows.serve "$@"
