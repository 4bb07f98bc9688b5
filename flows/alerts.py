"""``python -m flows.alerts setup --block NAME``: the automations that turn drift events into
notifications, created or updated on the Prefect server.

The flows emit ``selective-sync.verification.alert`` and ``selective-sync.reconcile.alert``
when a threshold is crossed (``selective_sync.alerts``); this command makes one automation
per kind, each firing once per such event and district, that sends the event's message
through the named Prefect notification block (email, Slack, a webhook...). Running it again
updates the same automations (matched by name), so it is safe to repeat. Automations live
on a server: with no PREFECT_API_URL the command refuses and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from uuid import UUID

import typer
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.settings import get_current_settings

from selective_sync.alerts import RECONCILE_ALERT, RESOURCE_PREFIX, VERIFICATION_ALERT
from selective_sync.cli.common import console, run_cli
from selective_sync.errors import BadInput, ServerRequired, StoreUnavailable

AUTOMATION_PREFIX = "selective-sync: "
SUBJECT = (
    "selective-sync {{ event.payload.kind }} alert: district {{ event.payload.district }} "
    "{{ event.payload.district_name }}"
)
BODY = """{{ event.payload.message }}

District: {{ event.payload.district }} {{ event.payload.district_name }}
Figures: {{ event.payload.summary }}
Thresholds crossed: {{ event.payload.crossed | join(', ') }}
Event: {{ event.event }} {{ event.id }} at {{ event.occurred }}"""


@dataclass(frozen=True)
class AlertKind:
    """One automation: its name, the alert event it fires on, what it is for."""

    name: str
    event: str
    description: str


KINDS = (
    AlertKind(
        f"{AUTOMATION_PREFIX}verification drift",
        VERIFICATION_ALERT,
        "A Verification Summary crossed an accuracy threshold (SELECTIVE_SYNC_ALERT_BELOW_"
        "PERCENT, SELECTIVE_SYNC_ALERT_DROP_POINTS).",
    ),
    AlertKind(
        f"{AUTOMATION_PREFIX}reconcile failures",
        RECONCILE_ALERT,
        "A reconciliation left keys failing (SELECTIVE_SYNC_ALERT_ON_FAILED_KEYS).",
    ),
)

app = typer.Typer(
    help="Drift alerts: Prefect automations that notify when a district drifts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def automation(kind: AlertKind, block_id: UUID) -> AutomationCore:
    """The automation of ``kind``: each alert event of a district notifies once."""
    return AutomationCore(
        name=kind.name,
        description=kind.description,
        enabled=True,
        trigger=EventTrigger(
            expect={kind.event},
            match={"prefect.resource.id": f"{RESOURCE_PREFIX}*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )


def server_url(what: str = "drift alerts") -> str:
    """The Prefect server's API URL; ServerRequired (naming ``what`` needs it) when none is
    configured."""
    url = get_current_settings().api.url
    if not url:
        raise ServerRequired(
            f"{what} need a Prefect server: automations live on it, and the ephemeral "
            "API a command starts on its own is gone when the command ends. Set "
            "PREFECT_API_URL (e.g. http://127.0.0.1:4200/api after `prefect server start`)"
        )
    return url


def find_block(client: SyncPrefectClient, name: str) -> tuple[UUID, str]:
    """The notification block named ``name`` (``type-slug/name`` or a unique ``name``):
    its id and its full name."""
    type_slug, _, block_name = name.rpartition("/")
    found = [
        doc
        for doc in client.read_block_documents(include_secrets=False)
        if doc.name == block_name
        and (not type_slug or (doc.block_type and doc.block_type.slug == type_slug))
    ]
    notifying = [
        d for d in found if d.block_schema and "notify" in (d.block_schema.capabilities or [])
    ]
    if not notifying:
        what = "is not a notification block" if found else "does not exist on the server"
        raise BadInput(
            f"block {name!r} {what}: make one first (e.g. an email or webhook block in the "
            "Prefect UI, Blocks page, or in Python; see docs/operating/index.md, Alerts)"
        )
    if len(notifying) > 1:
        names = ", ".join(sorted(f"{d.block_type.slug}/{d.name}" for d in notifying))
        raise BadInput(f"block name {name!r} is ambiguous: give one of {names}")
    doc = notifying[0]
    return doc.id, f"{doc.block_type.slug}/{doc.name}"


def set_up(client: SyncPrefectClient, block_id: UUID) -> list[tuple[str, str, UUID]]:
    """Create or update each alert automation; (name, what was done, id) for each.

    Matched by name: a second run updates the same automations. Duplicates of a name (made
    by hand, say) are removed so that one event never notifies twice.
    """
    done = []
    for kind in KINDS:
        wanted = automation(kind, block_id)
        existing = client.read_automations_by_name(kind.name)
        if existing:
            keep, *extra = existing
            client.update_automation(keep.id, wanted)
            for duplicate in extra:
                client.delete_automation(duplicate.id)
            done.append((kind.name, "updated", keep.id))
        else:
            done.append((kind.name, "created", client.create_automation(wanted)))
    return done


@app.command()
def setup(
    block: Annotated[
        str,
        typer.Option(
            "--block",
            help="Notification block to send through: NAME, or TYPE-SLUG/NAME when names clash.",
        ),
    ],
) -> None:
    """Create or update the drift-alert automations on the Prefect server (idempotent)."""
    url = server_url()
    with get_client(sync_client=True) as client:
        failure = client.api_healthcheck()
        if failure is not None:
            raise StoreUnavailable(f"cannot reach the Prefect server at {url}: {failure}")
        block_id, full_name = find_block(client, block)
        for name, action, automation_id in set_up(client, block_id):
            console.print(f"{action} automation {name!r} ({automation_id})", highlight=False)
    console.print(
        f"alerts notify through {full_name}; thresholds: SELECTIVE_SYNC_ALERT_* settings "
        "of the flows' environment",
        highlight=False,
    )


@app.command()
def show() -> None:
    """List the drift-alert automations on the Prefect server."""
    server_url()
    with get_client(sync_client=True) as client:
        for kind in KINDS:
            found = client.read_automations_by_name(kind.name)
            state = "missing" if not found else "enabled" if found[0].enabled else "paused"
            console.print(f"{kind.name}: {state} (fires on {kind.event})", highlight=False)


def main() -> None:
    """Entry point of ``python -m flows.alerts``."""
    run_cli(app)


if __name__ == "__main__":
    main()
