"""``selective-sync sync``: run the Selective Sync flow and print every key's outcome."""

from __future__ import annotations

import json

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.text import Text

from selective_sync.sync import progress as progress_events

from ..models import Outcome, SyncResult
from ..registry import get_object
from .backend import backend
from .common import UserOption, console, resolve_user
from .layout import Column, print_rows

OUTCOME_STYLE = {
    Outcome.SYNCED: "green",
    Outcome.UNCHANGED: "cyan",
    Outcome.NOT_FOUND: "yellow",
    Outcome.FAILED: "bold red",
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
    spec = get_object(object_name)
    refuse_early(spec.name, " ".join(ids), resolve_user(user), district)
    parameters = dict(
        object=spec.name,
        ids=" ".join(ids),
        requested_by=resolve_user(user),
        district=district,
        check_dependencies=check_dependencies,
        dry_run=dry_run,
    )
    if as_json:
        result = backend().run_sync(**parameters)
        typer.echo(json.dumps(result_to_dict(result), indent=2))
        return
    with Progress(
        TextColumn("[bold]Syncing"), BarColumn(), TaskProgressColumn(), console=console
    ) as bar:
        task = bar.add_task("sync", total=100)

        def listener(percent: float) -> None:
            bar.update(task, completed=percent)

        progress_events.add_listener(listener)
        try:
            result = backend().run_sync(**parameters)
        finally:
            progress_events.remove_listener(listener)
    print_result(result)


def refuse_early(object_name: str, ids: str, user: str, district: int | None) -> None:
    """Refuse a request that cannot run before the flow (and Prefect) starts.

    Inside the flow the same refusals are right for the UI and the API, but on a terminal
    Prefect prints each failed run's traceback: here a bad request, a user without W on the
    district or an unreachable database gets the one ``error:`` line every other command
    gives. The flow checks all of this again.
    """
    from selective_sync.settings import resolve_district

    from ..db import check_databases
    from ..rights import Right, authorise
    from ..settings import get_settings
    from ..sync import parse_ids

    settings = get_settings()
    config = resolve_district(settings, district)
    count = len(ids.replace(",", " ").replace(";", " ").split())
    authorise(
        user,
        Right.W,
        config.number,
        entry_point="cli:sync",
        asked=f"sync {object_name} {count} key{'' if count == 1 else 's'}",
    )
    parse_ids(ids)
    check_databases(config.url, settings.resolved_state_url)


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
            Text(k.outcome.value, style=OUTCOME_STYLE[k.outcome]),
            str(k.attempts),
            k.reason or "",  # the core names any parents synced first
        )
        for k in result.keys
    ]
    print_rows(columns, rows, title=title, out=console)
