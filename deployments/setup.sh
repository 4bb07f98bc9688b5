#!/usr/bin/env bash
# Put selective-sync on a Prefect server: create the process work pool (once) and
# deploy every deployment of prefect.yaml. Idempotent: run it again after an upgrade.
#
#   PREFECT_API_URL=http://prefect.example.org:4200/api deployments/setup.sh
#
# Needs: the project installed (prefect on PATH, or PREFECT=/path/to/prefect) and
# PREFECT_API_URL pointing at the server. Nothing secret is read or written here.
set -euo pipefail

POOL="${SELECTIVE_SYNC_POOL:-selective-sync}"
PREFECT="${PREFECT:-prefect}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -z "${PREFECT_API_URL:-}" ]] && ! "$PREFECT" config view 2>/dev/null | grep -q "PREFECT_API_URL="; then
  echo "error: set PREFECT_API_URL to the Prefect server (e.g. http://127.0.0.1:4200/api)" >&2
  exit 2
fi

if "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
  echo "work pool $POOL exists"
else
  "$PREFECT" work-pool create "$POOL" --type process
fi

cd "$ROOT"
"$PREFECT" --no-prompt deploy --all
# Runs whose machine dies are marked Crashed when their heartbeats stop (flows/zombies.py).
PYTHON="${PYTHON:-$(dirname "$(command -v "$PREFECT")")/python}"
"$PYTHON" -m flows.zombies setup
echo
echo "Deployed. Start a worker on each machine that runs flows: deployments/worker.sh"
