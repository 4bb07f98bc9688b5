#!/usr/bin/env bash
# Start a Prefect worker on the selective-sync process work pool; it runs flow runs
# as child processes of this checkout. Start as many as you need, on any machines.
#
#   export PREFECT_API_URL=http://prefect.example.org:4200/api
#   export SELECTIVE_SYNC_DISTRICT_URL=...  SELECTIVE_SYNC_STATE_URL=...   # secrets: env only
#   export SELECTIVE_SYNC_SERVICE_TOKEN_FILE=/run/secrets/selective-sync-token  # sign-in on
#   deployments/worker.sh [extra `prefect worker start` options, e.g. --limit 4]
#
# Runs `python -m flows.worker` (Prefect's process worker with warm run starts) with the
# python this prefect is installed in; PYTHON=/path/to/python chooses another.
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

# With sign-in (SELECTIVE_SYNC_SIGN_IN=proxy on the Prefect server) the API answers the
# sign-in proxy and the service token only. The token comes from a secret file (systemd's
# LoadCredential, a Kubernetes secret, a vault agent), never from code or prefect.yaml;
# Prefect's client sends it on every request and on its websockets.
if [[ -n "${SELECTIVE_SYNC_SERVICE_TOKEN_FILE:-}" && -z "${PREFECT_API_AUTH_STRING:-}" ]]; then
  PREFECT_API_AUTH_STRING="$(<"$SELECTIVE_SYNC_SERVICE_TOKEN_FILE")"
  export PREFECT_API_AUTH_STRING
  # The flow runs then act as the signed-in user the gateway stamped on each run.
  export SELECTIVE_SYNC_SIGN_IN="${SELECTIVE_SYNC_SIGN_IN:-proxy}"
fi
# Heartbeats of every flow run, for the zombie automation (python -m flows.zombies).
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-60}"
# Look for scheduled runs every second (Prefect's default, 10 s, is up to 10 s between a
# Submit and its run starting).
export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-1}"
# The deployments' command (prefect.yaml) is `python -m prefect.engine`: the python next
# to this prefect, the interpreter it is installed in, comes first.
PREFECT_BIN="$(dirname "$(command -v "$PREFECT")")"
PYTHON="${PYTHON:-$PREFECT_BIN/python}"
if [[ -x "$PREFECT_BIN/python" ]]; then
  export PATH="$PREFECT_BIN:$PATH"
fi
if [[ -x "$PYTHON" ]]; then
  # Prefect's worker, its runs forked from a process that has Prefect and the flows
  # imported (flows/worker.py): a run starts in a fraction of a second.
  exec "$PYTHON" -m flows.worker --pool "$POOL" --type process "$@"
fi
exec "$PREFECT" worker start --pool "$POOL" --type process "$@"
