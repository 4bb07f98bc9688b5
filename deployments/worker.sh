#!/usr/bin/env bash
# Start a Prefect worker on the selective-sync process work pool; it runs flow runs
# as child processes of this checkout. Start as many as you need, on any machines.
#
#   export PREFECT_API_URL=http://prefect.example.org:4200/api
#   export SELECTIVE_SYNC_DISTRICT_URL=...  SELECTIVE_SYNC_STATE_URL=...   # secrets: env only
#   deployments/worker.sh [extra `prefect worker start` options, e.g. --limit 4]
#
# The worker passes its environment on to every flow run: database URLs, districts,
# SELECTIVE_SYNC_TASK_RUNNER / _DASK_ADDRESS all come from here (or job variables).
set -euo pipefail

POOL="${SELECTIVE_SYNC_POOL:-selective-sync}"
PREFECT="${PREFECT:-prefect}"
# The deployments' pull step changes into this directory before loading a flow.
SELECTIVE_SYNC_CHECKOUT="${SELECTIVE_SYNC_CHECKOUT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export SELECTIVE_SYNC_CHECKOUT

if [[ -z "${PREFECT_API_URL:-}" ]] && ! "$PREFECT" config view 2>/dev/null | grep -q "PREFECT_API_URL="; then
  echo "error: set PREFECT_API_URL to the Prefect server; a worker needs a real API" >&2
  exit 2
fi

# Heartbeats of every flow run, for the zombie automation (python -m flows.zombies).
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-60}"
exec "$PREFECT" worker start --pool "$POOL" --type process "$@"
