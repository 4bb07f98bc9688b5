"""``selective-sync summary --all-districts``: the state's view of every district.

From each district's stored results in the state database by default (one read for all
of them); with ``--reverify`` every district is verified again first, here and now (one
district after another, each stored as a run of its own), and a district with nothing
stored yet is verified on the spot too. Needs R on all districts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..errors import SelectiveSyncError
from ..rights import Actor
from ..text import format_accuracy, format_timestamp
from ..verification.format import object_to_dict
from ..verification.state import STATE_COLUMNS, StateSummary, state_rows
from ..verification.store import DatabaseSummaryStore
from .common import console, err_console


def show_state(
    actor: Actor,
    *,
    reverify: bool,
    trend: bool,
    runs: int,
    as_json: bool,
    fmt: str | None,
    output: Path | None,
) -> None:
    """Print (and with ``fmt`` write) the state's Verification Summary."""
    from .summary import verify_and_store

    store = DatabaseSummaryStore()
    if trend:
        _print_state_trend(store.load_state_trend(runs, user=actor), as_json)
        return
    summary = store.load_state_summary(user=actor)
    missing = [d.number for d in summary.districts if not d.verified]
    todo = [d.number for d in summary.districts] if reverify else missing
    out = err_console if as_json else console
    failed = []
    for number in todo:
        out.print(Text(f"verifying district {number}..."))
        try:
            verify_and_store(store, number, None)
        except SelectiveSyncError as exc:
            # The other districts go on; this one keeps its older results, or none.
            failed.append(number)
            err_console.print(Text(f"warning: district {number} not verified: {exc}"))
    if todo:
        summary = store.load_state_summary(user=actor)
    rows = state_rows(summary, format_accuracy, format_timestamp)
    if as_json:
        typer.echo(json.dumps(_document(summary, rows), indent=2))
    else:
        where = "Re-verified now" if reverify else "Stored results"
        if missing and not reverify:
            where += f"; {len(missing)} district(s) had none stored and were verified now"
        if failed:
            where += f"; could not verify {', '.join(map(str, failed))}"
        console.print(Text(f"{where}. Worst districts first."))
        print_state(summary, rows)
    if fmt is not None:
        from ..reports.state import render_state_report, state_report

        chart = store.load_state_trend(runs)
        render_state_report(state_report(summary, datetime.now(UTC), chart), output, fmt)
        out.print(Text(f"wrote the state's Verification Summary ({fmt}) to {output}"))


def _document(summary: StateSummary, rows: list[dict]) -> dict:
    return {
        "overall_accuracy": format_accuracy(summary.distinct, summary.errors),
        "districts": [
            {
                **row,
                "objects": [
                    object_to_dict(o, format_accuracy(o.distinct, o.errors)) for o in d.objects
                ],
            }
            for d, row in zip(summary.districts, rows, strict=True)
        ],
    }


def print_state(summary: StateSummary, rows: list[dict]) -> None:
    title = (
        f"Verification Summary: {len(rows):,} districts, state overall accuracy "
        f"{format_accuracy(summary.distinct, summary.errors)}"
    )
    table = Table(title=title, title_justify="left")
    for column in STATE_COLUMNS:
        table.add_column(column, justify="right" if column in ("District", "Errors") else "left")
    for row in rows:
        table.add_row(*(Text(f"{v:,}" if isinstance(v, int) else str(v)) for v in row.values()))
    console.print(table)


def _print_state_trend(trend, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(trend.as_dict(), indent=2))
        return
    if not trend.runs:
        console.print(Text("No stored Verification Summary of any district yet."))
        return
    table = Table(title="The state's overall accuracy, end of each day", title_justify="left")
    table.add_column("Verified", no_wrap=True)
    table.add_column("All districts", justify="right")
    for run in trend.runs:
        (counts,) = run.counts.values()
        table.add_row(format_timestamp(run.verified_at), format_accuracy(*counts))
    console.print(table)
