#!/usr/bin/env bash
# Single-machine alternative to a work pool and workers: one process serves every
# deployment of prefect.yaml (same names, parameters and schedules) and runs their
# flow runs itself. For a small district with no worker set-up.
#
#   export PREFECT_API_URL=http://127.0.0.1:4200/api    # a running python -m flows.prefect_server
#   export SELECTIVE_SYNC_SERVICE_TOKEN_FILE=/run/secrets/selective-sync-token  # sign-in on
#   deployments/serve.sh [--limit N]
set -euo pipefail

PYTHON="${PYTHON:-python}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
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
# Look for scheduled runs every second (Prefect's default: 10 s).
export PREFECT_RUNNER_POLL_FREQUENCY="${PREFECT_RUNNER_POLL_FREQUENCY:-1}"
exec "$PYTHON" -m flows.serve "$@"
