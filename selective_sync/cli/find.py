"""``selective-sync find``: the personIDs or enrollmentIDs that match an ad hoc filter."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from ..errors import BadInput
from .common import UserOption, console, err_console, resolve_user

if TYPE_CHECKING:
    from ..find import FindResult

# ``selective_sync.find.MAX_LIMIT`` (the help text is built before the command runs, and
# importing the finder costs a database toolkit; tests/test_find.py checks they agree).
MAX_LIMIT = 10_000

# Columns that fold on a narrow terminal; IDs, codes and dates never do (a folded ID
# reads as two numbers).
WRAPPING = {"last", "first", "school"}


def find(
    object_name: str = typer.Option(
        "PersonIdentity", "--object", help="PersonIdentity (persons) or Enrollment."
    ),
    first: str = typer.Option(
        None, "--first", help="First name starts with (case and accents ignored)."
    ),
    last: str = typer.Option(
        None, "--last", help="Last name starts with (case and accents ignored)."
    ),
    birth_date: str = typer.Option(None, "--birth-date", help="YYYY-MM-DD (or MM/DD/YYYY)."),
    state_id: str = typer.Option(None, "--state-id", help="State ID, exactly."),
    school: str = typer.Option(None, "--school", help="School ID or name (a unique start)."),
    grade: str = typer.Option(None, "--grade", help="PK, KG, 1-12 or a district grade code."),
    end_year: str = typer.Option(None, "--end-year", help="School year's end year, e.g. 2026."),
    from_summary: str = typer.Option(
        None,
        "--from-summary",
        metavar="KIND",
        help="The keys of the latest stored Verification Summary: missing_at_state, "
        "mismatched or missing_at_district (filters narrow them).",
    ),
    limit: str = typer.Option(
        None, "--limit", metavar="N", help=f"Show at most N (default 100, at most {MAX_LIMIT:,})."
    ),
    district: int = typer.Option(None, "--district", help="District number (default: configured)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    ids_only: bool = typer.Option(
        False, "--ids-only", help="Print only the IDs, comma-separated, to paste into sync."
    ),
    user: str = UserOption,
) -> None:
    """Find district IDs by name, birth date, state ID, school, grade or end year. Needs R.

    R on the district searched."""
    from ..find import build_query, find_in_district, stored_keys
    from ..rights import Right, authorise
    from ..settings import get_settings, resolve_district

    if as_json and ids_only:
        raise BadInput("choose one of --json and --ids-only")
    # Every input is checked before any database or API is touched.
    query = build_query(
        object_name,
        first=first,
        last=last,
        birth_date=birth_date,
        state_id=state_id,
        school=school,
        grade=grade,
        end_year=end_year,
        limit=limit,
        from_summary=from_summary,
    )
    settings = get_settings()
    config = resolve_district(settings, district)
    authorise(
        resolve_user(user),
        Right.R,
        config.number,
        entry_point="cli:find",
        asked=f"find {query.object} IDs in district {config.number}",
    )
    keys = stored_keys(settings, query, config.number)
    result = find_in_district(settings, query, config.number, keys)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    elif ids_only:
        # stdout holds the IDs alone, so that "$(selective-sync find ... --ids-only)" pastes.
        typer.echo(result.ids_text)
        for line in notes(result):
            err_console.print(Text(line), soft_wrap=True)
    else:
        print_result(result)


def notes(result: FindResult) -> list[str]:
    """What the user should know beside the rows: nothing found, more found, state only."""
    lines = []
    if not result.records:
        lines.append(f"No {result.object} matches: {result.heading()}.")
    note = result.more_note()
    if note:
        lines.append(f"{note}: raise --limit (at most {MAX_LIMIT:,}) or narrow the filters.")
    if result.state_only and result.records:
        lines.append(
            f"These {result.key_label}s are at the state only (missing at the district): "
            "the district has no row for them."
        )
    return lines


def print_result(result: FindResult) -> None:
    from .layout import Column, print_rows

    if result.records:
        noun = "match" if result.total == 1 else "matches"
        # The heading on its own line (wrapped at the terminal), not as a table title.
        console.print(Text(f"{result.heading()}: {result.total:,} {noun}"))
        columns, rows = result.columns(), result.rows()
        # A table when it fits (the enrollment table has twelve columns), else stacked.
        print_rows(
            [Column(c, wrap=c in WRAPPING) for c in columns],
            [tuple(row.values()) for row in rows],
            out=console,
            compact=True,
        )
    for line in notes(result):
        console.print(Text(line))
