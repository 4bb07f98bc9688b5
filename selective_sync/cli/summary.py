"""``selective-sync summary``: the Verification Summary of the configured district."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from ..models import DistrictVerification
from ..service import verification_summary
from ..settings import get_settings
from ..summary_format import percent, summary_to_dict
from .common import console


def summary(
    objects: list[str] = typer.Option(
        None, "--object", "-o", help="Object to verify (repeatable; default: all)."
    ),
    district: int = typer.Option(None, "--district", help="District number (default: configured)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Verify district against state and print the Verification Summary."""
    result = verification_summary(get_settings(), district, objects or None)
    if as_json:
        typer.echo(json.dumps(summary_to_dict(result), indent=2))
        return
    print_summary(result)


def print_summary(result: DistrictVerification) -> None:
    head = Table(title="Verification Summary", title_justify="left")
    for column in ("District", "Name", "Overall Accuracy"):
        head.add_column(column)
    head.add_row(
        str(result.district_number), result.district_name, percent(result.overall_accuracy)
    )
    console.print(head)
    table = Table(show_lines=False)
    columns = (
        "Object",
        "Accuracy",
        "Timestamp",
        "Distinct",
        "At District",
        "At State",
        "Errors",
        "Missing at state",
        "Missing at district",
        "Mismatched",
    )
    for column in columns:
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
