"""``selective-sync summary``: the district's Verification Summary, as stored or verified now.

The summary keeps its results (each object with its own timestamp) until someone
re-verifies: ``summary`` shows the stored results (read from the state database),
``summary --reverify`` verifies here and now, with no Prefect API, and stores the new
results in the state database as a run of its own (the other objects keep theirs), and a
district with nothing stored yet is verified on the spot. The ``verification-summary``
flow stores its results in the same place, so either reads what the other stored. Needs R
on the district; the state's view (``--all-districts``) needs R on all districts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from ..errors import BadInput
from ..text import format_accuracy, format_timestamp
from .common import UserOption, console, err_console, resolve_user
from .layout import Column, print_rows

if TYPE_CHECKING:
    from ..models import DistrictVerification
    from ..verification.codec import AccuracyTrend
    from ..verification.store import DatabaseSummaryStore

TREND_RUNS = 10


def summary(
    objects: list[str] = typer.Option(
        None, "--object", help="Object to show or verify (repeatable; default: all)."
    ),
    district: int = typer.Option(None, "--district", help="District number (default: configured)."),
    all_districts: bool = typer.Option(
        False, "--all-districts", help="The state's view: every district, worst first."
    ),
    reverify: bool = typer.Option(
        False, "--reverify", help="Verify again now and store the new results (Re-Verify)."
    ),
    trend: bool = typer.Option(
        False, "--trend", help="Each object's accuracy over the last runs instead."
    ),
    runs: int = typer.Option(TREND_RUNS, "--runs", min=1, help="Runs shown by --trend."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    report: str = typer.Option(
        None,
        "--report",
        help="Also write the report as pdf, docx, csv (record issues) or xlsx (workbook).",
    ),
    output: Path = typer.Option(None, "--output", "-o", help="File the --report goes to."),
    user: str = UserOption,
) -> None:
    """The Verification Summary: stored results, or verified now with --reverify. Needs R.

    R on the district; the state's view (--all-districts) needs R on all districts."""
    from ..db import check_databases
    from ..registry import get_object
    from ..rights import ALL_DISTRICTS, Right, authorise
    from ..settings import get_settings, resolve_district
    from ..verification.format import summary_to_dict
    from ..verification.store import DatabaseSummaryStore

    # Everything that can be refused is checked before any database or API is touched.
    names = [get_object(o).name for o in dict.fromkeys(objects)] if objects else None
    fmt = _report_target(report, output)
    if trend and (reverify or fmt is not None):
        raise BadInput("--trend shows the stored history: it takes no --reverify or --report")
    settings = get_settings()
    if all_districts:
        if district is not None or names:
            raise BadInput(
                "--all-districts shows every district and object: no --district or --object"
            )
        if fmt == "csv":
            raise BadInput("the state's Verification Summary is available as pdf or docx")
        check_databases(state_url=settings.resolved_state_url)
        actor = authorise(
            resolve_user(user),
            Right.R,
            ALL_DISTRICTS,
            entry_point="cli:summary",
            asked="the state's Verification Summary (every district)",
        )
        from .state_summary import show_state

        show_state(
            actor,
            reverify=reverify,
            trend=trend,
            runs=runs,
            as_json=as_json,
            fmt=fmt,
            output=output,
        )
        return
    config = resolve_district(settings, district)
    # The summary describes these databases: a missing one is named, not a stale result shown.
    check_databases(config.url, settings.resolved_state_url)
    actor = authorise(
        resolve_user(user),
        Right.R,
        config.number,
        entry_point="cli:summary",
        asked=f"Verification Summary of district {config.number}",
    )
    verification_store = DatabaseSummaryStore(settings)
    if trend:
        history = verification_store.load_trend(config.number, runs, user=actor)
        _print_trend(history, as_json)
        return
    stored = None if reverify else verification_store.load_latest_summary(config.number)
    shown, fresh = _shown(verification_store, stored, names, config.number)
    out = err_console if as_json else console  # with --json, stdout holds one document
    if as_json:
        document = summary_to_dict(shown)
        document["freshly_verified"] = bool(fresh)
        for entry in document["objects"]:
            entry["freshly_verified"] = entry["object"] in fresh
        typer.echo(json.dumps(document, indent=2))
    else:
        _say_where_from(shown, stored, fresh, reverify)
        print_summary(shown)
    if fmt is not None:
        from ..reports import render_report, verification_report_from_result

        chart = None
        if fmt != "csv":
            chart = verification_store.load_trend(config.number, TREND_RUNS)
        content = verification_report_from_result(shown, datetime.now(UTC), chart)
        render_report(content, output, fmt)
        out.print(Text(f"wrote the Verification Summary ({fmt}) to {output}"))


def _shown(
    store: DatabaseSummaryStore,
    stored: DistrictVerification | None,
    names: list[str] | None,
    district: int,
) -> tuple[DistrictVerification, set[str]]:
    """The summary to show and the objects verified for it now: the stored results of the
    objects asked for, verifying (and so storing) those with no stored result."""
    from ..models import DistrictVerification
    from ..registry import object_names

    wanted = names or object_names()
    have = {o.object: o for o in stored.objects} if stored else {}
    if stored is not None and not names:
        wanted = [o.object for o in stored.objects]  # every stored object, as stored
    missing = [n for n in wanted if n not in have]
    fresh: dict = {}
    name = stored.district_name if stored else ""
    if missing:
        # All of them when nothing is stored: the flow's default is every registry object.
        asked = None if stored is None and not names else missing
        result = verify_and_store(store, district, asked)
        fresh = {o.object: o for o in result.objects}
        name = result.district_name
    objects = [fresh.get(n) or have[n] for n in wanted if n in fresh or n in have]
    return DistrictVerification(district, name, objects), set(fresh)


def verify_and_store(
    store: DatabaseSummaryStore, district: int, objects: list[str] | None
) -> DistrictVerification:
    """Verify the district's ``objects`` (default: every registry object) here and now,
    and store the results as a run of their own, as the verification-summary flow would."""
    from uuid import uuid4

    from sqlalchemy.exc import SQLAlchemyError

    from ..db import make_engine
    from ..errors import DatabaseUnavailable
    from ..settings import resolve_district
    from ..text import first_line
    from ..verification.engine import verify_district

    settings = store.settings
    config = resolve_district(settings, district)
    district_engine = make_engine(config.url)
    state_engine = make_engine(settings.resolved_state_url)
    try:
        result = verify_district(
            district_engine,
            state_engine,
            config.number,
            config.name,
            objects,
            chunk_rows=settings.verify_chunk_rows,
        )
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"district {config.number} could not be verified: {first_line(exc)}"
        ) from exc
    finally:
        district_engine.dispose()
        state_engine.dispose()
    store.store(result, str(uuid4()))
    return result


def _say_where_from(
    shown: DistrictVerification,
    stored: DistrictVerification | None,
    fresh: set[str],
    reverify: bool,
) -> None:
    if reverify:
        console.print(Text("Re-verified now; the new results are stored."))
    elif stored is None:
        console.print(
            Text(
                f"No stored Verification Summary of district {shown.district_number}: "
                "verified now; the results are stored."
            )
        )
    else:
        kept = [o for o in shown.objects if o.object not in fresh]
        times = sorted(o.verified_at for o in kept)
        when = (
            f"verified {format_timestamp(times[0])}"
            if format_timestamp(times[0]) == format_timestamp(times[-1])
            else f"verified between {format_timestamp(times[0])} and {format_timestamp(times[-1])}"
        )
        line = f"Stored results, {when}"
        if fresh:
            line += f"; {', '.join(sorted(fresh))} had none stored and verified now"
        console.print(Text(line + ". Re-verify with: selective-sync summary --reverify"))


def _report_target(report: str | None, output: Path | None) -> str | None:
    """The report format, checked with the output path before the verification runs."""
    if report is None:
        if output is not None:
            raise BadInput("--output needs --report pdf|docx|csv|xlsx")
        return None
    from ..reports import report_format
    from ..reports._output import check_writable

    fmt = report_format(report)
    if output is None:
        raise BadInput(f"--report {fmt} needs --output FILE")
    check_writable(output)
    return fmt


def print_summary(result: DistrictVerification) -> None:
    from ..verification.format import DISTRICT_COLUMNS, OBJECT_COLUMNS

    print_rows(
        [Column(c, wrap=c == "Name") for c in DISTRICT_COLUMNS],
        [
            (
                str(result.district_number),
                result.district_name,
                format_accuracy(result.distinct, result.errors),
            )
        ],
        title="Verification Summary",
        out=console,
    )
    columns = [
        Column(c, justify="left" if c in ("Object", "Timestamp") else "right")
        for c in OBJECT_COLUMNS
    ]
    rows = [
        (
            o.object,
            format_accuracy(o.distinct, o.errors),
            format_timestamp(o.verified_at),
            f"{o.distinct:,}",
            f"{o.at_district:,}",
            f"{o.at_state:,}",
            f"{o.errors:,}",
            f"{len(o.missing_at_state):,}",
            f"{len(o.missing_at_district):,}",
            f"{len(o.mismatched):,}",
        )
        for o in result.objects
    ]
    print_rows(columns, rows, out=console)


def _print_trend(trend: AccuracyTrend, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(trend.as_dict(), indent=2))
        return
    if not trend.runs:
        console.print(
            Text(
                f"No stored Verification Summary of district {trend.district_number} yet: "
                "run selective-sync summary first."
            )
        )
        return
    title = f"Accuracy over the last {len(trend.runs)} runs: district {trend.district_number}"
    columns = [Column("Verified"), *(Column(n, justify="right") for n in trend.objects)]
    rows = [
        (
            format_timestamp(run.verified_at),
            *(format_accuracy(*run.counts[n]) if n in run.counts else "-" for n in trend.objects),
        )
        for run in trend.runs
    ]
    print_rows(columns, rows, title=title, out=console)
