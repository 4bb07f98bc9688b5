"""``selective-sync history``: list, show, delete and clear Sync History entries.

Read from the ledger in the state database with no Prefect API; deleting reaches the
Prefect API only for an entry that has a flow run (``selective_sync.history.store``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from .backend import history_store
from .common import UserOption, acting, console, err_console
from .layout import Column, print_rows
from .sync import OUTCOME_STYLE

if TYPE_CHECKING:
    from selective_sync.history.entry import HistoryEntry
    from selective_sync.history.store import LedgerHistoryStore

app = typer.Typer(
    help="The Sync History: every selective sync request, its outcome and each key's.",
    no_args_is_help=True,
)

RunArg = Annotated[
    str,
    typer.Argument(
        metavar="RUN", help="Run id (or its first characters) or run name, from history list."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DistrictOption = Annotated[
    int | None, typer.Option("--district", help="District number (default: configured).")
]


def _store() -> LedgerHistoryStore:
    return history_store()


@app.command("list")
def list_entries(
    as_json: JsonOption = False,
    district: DistrictOption = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many entries.")] = 50,
    report: Annotated[
        str | None, typer.Option("--report", help="Also write the list as xlsx (workbook).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File the --report goes to.")
    ] = None,
    user: str | None = UserOption,
) -> None:
    """The district's entries, newest first. Needs R on the district."""
    _check_report(report, output)
    entries = _store().list_entries(district, limit, user=acting(user, "history list"))
    if report is not None:
        from selective_sync.reports.xlsx import write_history_xlsx

        write_history_xlsx(entries, output)
        # With --json, stdout holds the one JSON document.
        (err_console if as_json else console).print(
            Text(f"wrote the Sync History ({len(entries)} entries, xlsx) to {output}")
        )
    if as_json:
        typer.echo(json.dumps([e.as_dict(with_outcomes=False) for e in entries], indent=2))
        return
    if not entries:
        console.print("No Sync History entries.")
        return
    from selective_sync.history.entry import keys_text, status_text
    from selective_sync.text import format_timestamp

    columns = [
        *(Column(c) for c in ("Run", "Requested", "User", "Status", "Completed", "Object")),
        Column("Keys", wrap=True),
        Column("Records", justify="right"),
    ]
    rows = [
        (
            e.short_id,
            format_timestamp(e.requested_at),
            e.requested_by,
            status_text(e),
            format_timestamp(e.completed_at),
            e.object,
            keys_text(e.keys),
            e.records,
        )
        for e in entries
    ]
    print_rows(columns, rows, title="Sync History", out=console)


@app.command()
def show(run: RunArg, as_json: JsonOption = False, user: str | None = UserOption) -> None:
    """One entry in full: the request, its end, every key's outcome. Needs R on its district."""
    entry = _store().get_entry(run, user=acting(user, "history show"))
    if as_json:
        typer.echo(json.dumps(entry.as_dict(), indent=2))
        return
    print_entry(entry)


@app.command("rebuild-artifacts")
def rebuild_artifacts(district: DistrictOption = None, user: str | None = UserOption) -> None:
    """Write the View History table again from the ledger. Needs R on the district.

    For when Prefect's database was lost, moved or cleaned up; the ledger keeps every request."""
    shown = _store().rebuild_artifacts(district, user=acting(user, "history rebuild-artifacts"))
    console.print(Text(f"View History table rewritten from the ledger: {shown} entries"))


@app.command()
def delete(run: RunArg, user: str | None = UserOption) -> None:
    """Delete one entry: ledger rows, artifacts, run, report files. Needs D on its district."""
    entry = _store().delete_entry(run, user=acting(user, "history delete"))
    console.print(Text(f"deleted Sync History entry {entry.run_id} ({entry.run_name})"))


@app.command()
def clear(
    district: DistrictOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    user: str | None = UserOption,
) -> None:
    """Delete every finished entry of one district (runs in progress are kept). Needs D there."""
    from selective_sync.settings import resolve_district

    from ..rights import Right
    from ..settings import get_settings

    config = resolve_district(get_settings(), district)
    # Refuse before asking: a user without D must not be invited to confirm anything.
    actor = acting(user, "history clear").require(
        Right.D, config.number, asked=f"clear the Sync History of district {config.number}"
    )
    if not yes:
        typer.confirm(
            f"Delete every Sync History entry of district {config.number} {config.name}? "
            "This cannot be undone",
            abort=True,
        )
    result = _store().clear(config.number, user=actor)
    also = f" (and {result.runs_only} runs refused before they started)" if result.runs_only else ""
    console.print(
        Text(
            f"deleted {len(result.deleted)} Sync History entries of district "
            f"{result.district}{also}"
        )
    )
    if result.skipped:
        console.print(
            Text(
                f"kept {len(result.skipped)} entries still in progress: "
                + ", ".join(e.short_id for e in result.skipped)
            )
        )


def _check_report(report: str | None, output: Path | None) -> None:
    """--report and --output, checked before the history is read."""
    from ..errors import BadInput

    if report is None:
        if output is not None:
            raise BadInput("--output needs --report xlsx")
        return
    from ..reports import report_format
    from ..reports._output import check_writable

    if report_format(report) != "xlsx":
        raise BadInput("the Sync History list is written as xlsx only (--report xlsx)")
    if output is None:
        raise BadInput("--report xlsx needs --output FILE")
    check_writable(output)


def print_entry(entry: HistoryEntry) -> None:
    from rich.table import Table

    from selective_sync.history.entry import detail_rows

    detail = Table(show_header=False, title="Sync History entry", title_justify="left")
    detail.add_column(style="bold")
    detail.add_column(overflow="fold")
    for name, value in detail_rows(entry):
        detail.add_row(name, Text(value))
    console.print(detail)
    if entry.outcomes is None:
        console.print("No per-key outcomes were recorded for this run.")
        return
    columns = [
        Column("Key", justify="right"),
        Column("Outcome"),
        Column("Attempts", justify="right"),
        Column("Reason", wrap=True),
        Column("Parents synced", wrap=True),
    ]
    rows = [
        (
            str(k.key),
            Text(k.outcome.value, style=OUTCOME_STYLE[k.outcome]),
            str(k.attempts),
            k.reason or "",
            ", ".join(k.parents_synced),
        )
        for k in entry.outcomes
    ]
    print_rows(columns, rows, title=f"Outcomes: Records {entry.records}", out=console)
