"""The ``selective-sync`` command line: one Typer app, one sub-module per command group.

Commands run here, with no Prefect API: a sync runs the core's request runner, the Sync
History and the stored Verification Summary are read from (and written to) the state
database. What only Prefect holds (a flow run to delete, the UI's view when ``ui`` starts)
goes through the backend it is given (``selective_sync.cli.backend``); the entry point that
gives it one is ``flows.cli``. Each command module imports what its command uses inside
the command, so a command (and ``--help``) loads nothing another one needs.
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
    # The few commands that reach Prefect (deleting a flow run's entry, ``ui``) start its
    # ephemeral API when no server is configured; keep it quiet.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's default 20 s is too short for the first start on a busy two-core machine;
    # a timeout there surfaces as a raw traceback rather than our one error line.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    register()
    run_cli(app)
