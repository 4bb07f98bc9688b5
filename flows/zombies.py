"""``python -m flows.zombies``: the automation that marks unresponsive runs Crashed.

A flow run whose machine dies stays Running in Prefect forever: nothing is left to report
it. Prefect's documented remedy (docs: "How to detect and respond to zombie flows") is a
heartbeat from every deployment run (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, set by
``deployments/worker.sh`` and ``serve.sh``) and an automation that sets Crashed when the
heartbeats stop. This module creates that automation (matched by name: running it again
updates it). The Sync History does not depend on it: a request's own heartbeat in the
ledger tells the same (``selective_sync.history.ledger``); this keeps the Prefect UI right.
"""

from __future__ import annotations

from datetime import timedelta

import typer
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from flows.alerts import AUTOMATION_PREFIX, server_url
from selective_sync.cli.common import console, run_cli

NAME = f"{AUTOMATION_PREFIX}crash unresponsive runs"
HEARTBEAT_S = 60
"""What the deployment scripts set PREFECT_FLOWS_HEARTBEAT_FREQUENCY to."""
MISSED_BEATS = 3


def zombie_automation(heartbeat_s: int = HEARTBEAT_S) -> AutomationCore:
    """Crash a flow run not heard from for ``MISSED_BEATS`` heartbeats."""
    return AutomationCore(
        name=NAME,
        description=(
            f"A flow run with no heartbeat for {MISSED_BEATS * heartbeat_s} s lost its "
            "process (machine gone, killed): mark it Crashed."
        ),
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=MISSED_BEATS * heartbeat_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {MISSED_BEATS * heartbeat_s} s: the run's process "
                    "is gone (marked by the selective-sync zombie automation)"
                ),
            )
        ],
    )


def ensure(client: SyncPrefectClient) -> tuple[str, object]:
    """Create or update the automation; (what was done, its id)."""
    wanted = zombie_automation()
    existing = client.read_automations_by_name(NAME)
    if existing:
        keep, *extra = existing
        client.update_automation(keep.id, wanted)
        for duplicate in extra:
            client.delete_automation(duplicate.id)
        return "updated", keep.id
    return "created", client.create_automation(wanted)


app = typer.Typer(
    help="Mark flow runs whose heartbeats stopped as Crashed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def commands() -> None:
    """Mark flow runs whose heartbeats stopped as Crashed (``setup`` makes the automation)."""


@app.command()
def setup() -> None:
    """Create or update the automation on the Prefect server (PREFECT_API_URL)."""
    url = server_url("the zombie-run automation and its heartbeats")
    with get_client(sync_client=True) as client:
        done, automation_id = ensure(client)
    console.print(f"{done} automation {NAME!r} ({automation_id}) on {url}")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
