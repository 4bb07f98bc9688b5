"""``selective-sync sync``: run one Selective Sync request here and print every key's outcome.

The request runs in this process (``selective_sync.sync.request``), with no Prefect API:
the same steps and ledger record as a run of the ``selective-sync`` flow, so it is in the
Sync History at once and in the UI's View History table at its next rewrite.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from .common import UserOption, console, resolve_user
from .layout import Column, print_rows

if TYPE_CHECKING:
    from ..models import SyncResult

# By ``Outcome`` value (the enum's module is imported with the request, not for --help).
OUTCOME_STYLE = {
    "synced": "green",
    "unchanged": "cyan",
    "not_found": "yellow",
    "failed": "bold red",
}


def sync(
    object_name: str = typer.Argument(..., metavar="OBJECT", help="PersonIdentity, Enrollment…"),
    ids: list[str] = typer.Argument(..., help="District IDs: separate args or one pasted list."),
    user: str = UserOption,
    district: int = typer.Option(None, "--district", help="District number (default: configured)."),
    check_dependencies: bool = typer.Option(
        False, "--check-dependencies", help="Sync missing or different parents first."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Re-send the named records from the district to the state, and show each outcome."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from ..sync.request import SyncRequest, run_request

    # The runner authorises the user (W) and checks every input before anything is written.
    request = SyncRequest(
        object=object_name,
        ids=" ".join(ids),
        requested_by=resolve_user(user),
        district=district,
        check_dependencies=check_dependencies,
        dry_run=dry_run,
    )
    if as_json:
        result = run_request(request)
        typer.echo(json.dumps(result_to_dict(result), indent=2))
        return
    with Progress(
        TextColumn("[bold]Syncing"), BarColumn(), TaskProgressColumn(), console=console
    ) as bar:
        task = bar.add_task("sync", total=100)
        result = run_request(request, on_progress=lambda p: bar.update(task, completed=p))
    print_result(result)


def result_to_dict(result: SyncResult) -> dict:
    return {
        "object": result.object,
        "requested_by": result.requested_by,
        "district": result.district_number,
        "dry_run": result.dry_run,
        "check_dependencies": result.check_dependencies,
        "records": {"succeeded": result.succeeded, "total": result.total},
        "keys": [k.as_dict() for k in result.keys],
    }


def print_result(result: SyncResult) -> None:
    title = (
        f"{result.object} sync by {result.requested_by}: "
        f"Records {result.succeeded}/{result.total}" + (" (dry run)" if result.dry_run else "")
    )
    columns = [
        Column("Key", justify="right"),
        Column("Outcome"),
        Column("Attempts", justify="right"),
        Column("Reason", wrap=True),
    ]
    rows = [
        (
            str(k.key),
            Text(k.outcome.value, style=OUTCOME_STYLE[k.outcome.value]),
            str(k.attempts),
            k.reason or "",  # the core names any parents synced first
        )
        for k in result.keys
    ]
    print_rows(columns, rows, title=title, out=console)
