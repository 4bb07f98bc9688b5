"""The ``selective-sync`` command line: one Typer app, one sub-module per command group.

It runs flows and reads the stored history through the backend it is given
(``selective_sync.cli.backend``); the entry point that gives it one is ``flows.cli``.
"""

from __future__ import annotations

import os

import typer

from .common import run_cli

app = typer.Typer(
    help="Find and fix drift between a district's database and the state's.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def register() -> None:
    """Add every command to ``app`` (once; later calls do nothing)."""
    if app.registered_commands:
        return
    from . import demo, find, history, initdb, report, rights, summary, sync, ui

    app.command()(demo.demo)
    app.command("init-db")(initdb.init_db)
    app.command()(summary.summary)
    app.command()(sync.sync)
    app.command()(find.find)
    app.add_typer(rights.app, name="rights")
    app.add_typer(history.app, name="history")
    report.register(app)
    app.command()(ui.ui)


def main() -> None:
    """Console-script entry point."""
    # The CLI starts Prefect's ephemeral API when no server is configured; keep it quiet.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's default 20 s is too short for the first start on a busy two-core machine;
    # a timeout there surfaces as a raw traceback rather than our one error line.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    register()
    run_cli(app)
