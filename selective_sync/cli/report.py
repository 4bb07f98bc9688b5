"""``selective-sync report RUN`` (a Sync Request History again, from the history) and
``selective-sync reports serve`` (the HTTP server the run artifacts' report links point to)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..errors import BadInput
from .backend import history_store
from .common import UserOption, acting, console

reports_app = typer.Typer(
    help="Serve the stored reports over HTTP for the links in the runs' artifacts.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``reports`` to the top-level app."""
    app.command()(report)
    app.add_typer(reports_app, name="reports")


def sync_format(fmt: str | None, output: Path) -> str:
    """The format asked for, else the output file's suffix; pdf, docx or xlsx."""
    from ..reports import report_format

    if fmt is None:
        if output.suffix.lower() not in (".pdf", ".docx", ".xlsx"):
            raise BadInput(
                f"cannot tell the format from {output.name!r}: give --format pdf|docx|xlsx"
            )
        fmt = output.suffix
    name = report_format(fmt)
    if name == "csv":
        raise BadInput(
            "csv is available for the Verification Summary only: choose pdf, docx or xlsx"
        )
    return name


def report(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="Run id (or its first characters) or run name, from history list."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help="pdf, docx or xlsx (default: from the file name)."),
    ] = None,
    user: str | None = UserOption,
) -> None:
    """Build a selective sync's Sync Request History report again from the history (xlsx:
    the request and every key's outcome as a workbook). Needs R on the run's district."""
    from ..reports._output import check_writable

    name = sync_format(fmt, output)
    check_writable(output)  # before the seconds spent reaching the history
    entry = history_store().get_entry(run, user=acting(user, "report"))
    if name == "xlsx":
        from ..reports.xlsx import write_history_xlsx

        if entry.outcomes is None:
            raise BadInput(f"history entry {entry.short_id} holds no per-key outcomes")
        write_history_xlsx([entry], output, outcomes_of=entry)
    else:
        write_sync_report(entry, name, output)
    console.print(
        Text(f"wrote the Sync Request History of run {entry.run_id} ({name}) to {output}")
    )


def write_sync_report(entry, fmt: str, output: Path) -> None:
    """The run's PDF or DOCX: the stored file (the one its link serves), made and kept
    first if nobody asked for it yet; rendered here only when it cannot be kept (a request
    not finished yet, a report folder this user cannot write)."""
    import shutil

    from ..errors import ReportFailed, ReportNotReady
    from ..reports import render_report, sync_report_from_result
    from ..reports.on_demand import SyncReports
    from ..reports.storage import StoredReport

    try:
        stored = SyncReports.from_settings().path(StoredReport.sync(entry.run_id, fmt), entry)
    except (ReportNotReady, ReportFailed) as exc:
        logging.getLogger(__name__).info("report not kept: %s", exc)
        content = sync_report_from_result(entry.to_sync_result(), datetime.now(UTC))
        render_report(content, output, fmt)
        return
    shutil.copyfile(stored, output)


@reports_app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", min=0, max=65535)
    ] = 8765,
) -> None:
    """Serve stored reports: the signed links in the runs' artifacts; R checked per download."""
    from ..reports.server import is_loopback, make_server
    from ..settings import get_settings

    settings = get_settings()
    server = make_server(host, port, settings)
    # One access line per request (path and status, never the link's signature).
    logging.getLogger("selective_sync.reports").setLevel(logging.INFO)
    console.print(Text(f"serving reports from {server.storage.root} at {server.url}"))
    if settings.reports_base_url.rstrip("/") != server.url:
        console.print(
            Text(
                f"note: report links are made with SELECTIVE_SYNC_REPORTS_BASE_URL="
                f"{settings.reports_base_url}; set it to the address browsers use to reach "
                "this server"
            )
        )
    if not is_loopback(host):
        console.print(
            Text("warning: reachable beyond this machine over plain HTTP; put TLS in front")
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
