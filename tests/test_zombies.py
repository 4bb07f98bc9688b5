"""The zombie-run automation on a real Prefect API: created once, updated in place."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_the_zombie_automation_is_made_once_and_crashes_silent_runs():
    from prefect.client.orchestration import get_client

    from flows.zombies import NAME, ensure

    with get_client(sync_client=True) as client:
        first, automation_id = ensure(client)
        again, same_id = ensure(client)
        (stored,) = client.read_automations_by_name(NAME)
    assert (first, again) == ("created", "updated") and same_id == automation_id
    assert stored.id == automation_id and stored.enabled
    trigger = stored.trigger
    assert trigger.posture.value == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.Completed", "prefect.flow-run.Crashed"} <= trigger.expect
    assert trigger.within.total_seconds() == 180
    (action,) = stored.actions
    assert action.type == "change-flow-run-state" and action.state.value == "CRASHED"


def test_the_setup_command_makes_it_and_refuses_without_a_server():
    import os
    import subprocess
    import sys

    import prefect.settings

    env = dict(os.environ, PREFECT_API_URL=prefect.settings.PREFECT_API_URL.value())
    command = [sys.executable, "-m", "flows.zombies", "setup"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "automation 'selective-sync: crash unresponsive runs'" in done.stdout
    env.pop("PREFECT_API_URL")
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: the zombie-run automation"), refused.stderr
