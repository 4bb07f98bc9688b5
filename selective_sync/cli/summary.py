"""``selective-sync summary``: the Verification Summary of the configured district."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..errors import BadInput
from ..models import DistrictVerification
from ..service import verification_summary
from ..settings import get_settings
from ..summary_format import DISTRICT_COLUMNS, OBJECT_COLUMNS, percent, summary_to_dict
from .common import console, err_console


def summary(
    objects: list[str] = typer.Option(
        None, "--object", help="Object to verify (repeatable; default: all)."
    ),
    district: int = typer.Option(None, "--district", help="District number (default: configured)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    report: str = typer.Option(
        None, "--report", help="Also write the report as pdf, docx or csv (record issues)."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="File the --report goes to."),
) -> None:
    """Verify district against state and print the Verification Summary."""
    fmt = _report_target(report, output)
    result = verification_summary(get_settings(), district, objects or None)
    if as_json:
        typer.echo(json.dumps(summary_to_dict(result), indent=2))
    else:
        print_summary(result)
    if fmt is not None:
        from ..reports import render_report, verification_report_from_result

        content = verification_report_from_result(result, datetime.now(UTC))
        render_report(content, output, fmt)
        # With --json, stdout holds one JSON document only.
        (err_console if as_json else console).print(
            Text(f"wrote the Verification Summary ({fmt}) to {output}")
        )


def _report_target(report: str | None, output: Path | None) -> str | None:
    """The report format, checked with the output path before the verification runs."""
    if report is None:
        if output is not None:
            raise BadInput("--output needs --report pdf|docx|csv")
        return None
    from ..reports import report_format
    from ..reports._output import check_writable

    fmt = report_format(report)
    if output is None:
        raise BadInput(f"--report {fmt} needs --output FILE")
    check_writable(output)
    return fmt


def print_summary(result: DistrictVerification) -> None:
    head = Table(title="Verification Summary", title_justify="left")
    for column in DISTRICT_COLUMNS:
        head.add_column(column)
    head.add_row(
        str(result.district_number), result.district_name, percent(result.overall_accuracy)
    )
    console.print(head)
    table = Table(show_lines=False)
    for column in OBJECT_COLUMNS:
        table.add_column(column, justify="left" if column in ("Object", "Timestamp") else "right")
    for o in result.objects:
        table.add_row(
            o.object,
            percent(o.accuracy),
            o.verified_at.strftime("%Y-%m-%d %H:%M"),
            f"{o.distinct:,}",
            f"{o.at_district:,}",
            f"{o.at_state:,}",
            f"{o.errors:,}",
            f"{len(o.missing_at_state):,}",
            f"{len(o.missing_at_district):,}",
            f"{len(o.mismatched):,}",
        )
    console.print(table)
