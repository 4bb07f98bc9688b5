#!/usr/bin/env bash
# The README's main command: set up, build the demo district (SQLite, no server), and run
# real selective syncs on it through the CLI, echoing every command as a person would type it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
export SELECTIVE_SYNC_DATA_DIR=${SELECTIVE_SYNC_DATA_DIR:-$PWD/.demo-data}
# No command below needs Prefect: each runs here, on the SQLite files, and records what it
# did in the state database (the Sync History, the stored summary), where the UI reads it.
ss=.venv/bin/selective-sync
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; export COLUMNS=${COLUMNS:-150}; fi
step() { printf '\n%s$ selective-sync %s%s\n' "$bold" "$*" "$plain"; "$ss" "$@"; }
pick() { .venv/bin/python -c "import json,sys; m=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" \
  "$SELECTIVE_SYNC_DATA_DIR/manifest.json" "$1"; }

step demo --persons 2000
# The first administrator (kept in $SELECTIVE_SYNC_DATA_DIR/rights.db across demo runs).
"$ss" rights list --user demo-admin >/dev/null 2>&1 || step rights bootstrap demo-admin
# The summary keeps its results (in the state database) until a Re-Verify: verify now.
step summary --reverify --user demo-admin
echo; echo "# The stored summary, shown again without verifying (each object has its timestamp):"
step summary --object PersonIdentity --user demo-admin

echo; echo "# Which persons differ? The stored summary's record issues, as a table:"
step find --object PersonIdentity --from-summary mismatched --limit 5 --user demo-admin

orphan=$(pick 'm["will_fail"]["Enrollment"]["parent_missing"][0]')
mismatched=$(pick 'm["PersonIdentity"]["mismatched"][0]')
missing=$(pick 'm["PersonIdentity"]["missing_at_state"][-1]')
echo; echo "# An enrollment whose person is not at the state fails with its reason ..."
step sync Enrollment "$orphan" --user demo-admin
echo; echo "# ... and succeeds with --check-dependencies, which syncs the person first:"
step sync Enrollment "$orphan" --user demo-admin --check-dependencies
echo; echo "# A mismatched person, a person missing at the state, and an ID that does not exist:"
step sync PersonIdentity "$mismatched, $missing, 99999999" --user demo-admin
echo; echo "# Re-Verify after the syncs (a plain summary would show the stored results from before):"
step summary --reverify --user demo-admin
step summary --trend --user demo-admin

echo
echo "# The same tool in the Prefect UI, on this demo: one command starts a Prefect server,"
echo "# every deployment and the report server (Ctrl-C stops them all); the syncs above are"
echo "# in the district's View History table as soon as it has started:"
printf '%s$ SELECTIVE_SYNC_DATA_DIR=%s .venv/bin/selective-sync ui%s\n' "$bold" "$SELECTIVE_SYNC_DATA_DIR" "$plain"
echo "# It prints two demo users and their passwords: open http://127.0.0.1:4200/, sign in,"
echo "# then Deployments > sync-records > Run > Custom run."
