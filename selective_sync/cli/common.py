"""What every CLI command shares: the current user, and errors printed as one clear line."""

from __future__ import annotations

import getpass
import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import SelectiveSyncError

console = Console()
err_console = Console(stderr=True)


def default_user() -> str:
    return getpass.getuser()


UserOption = typer.Option(
    None, "--user", "-u", help="Who is acting (default: the OS user).", show_default=False
)


def resolve_user(user: str | None) -> str:
    return (user or default_user()).strip()


def fail_line(message: str) -> None:
    """Print one 'error: ...' line; the message is printed literally, never as markup."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    fail_line(message)
    raise typer.Exit(code)


def run_cli(app: typer.Typer) -> None:
    """Run ``app``; a SelectiveSyncError becomes one 'error: ...' line and exit code 1.

    Usage errors are left to Typer's standalone mode, which prints them and exits 2.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SelectiveSyncError as exc:
        fail_line(str(exc))
        sys.exit(1)
    except RuntimeError as exc:
        # Prefect's ephemeral API failing to start is an operator's problem, not a bug.
        if "Prefect API" not in str(exc):
            raise
        fail_line(f"{exc} (start a server and set PREFECT_API_URL, or try again)")
        sys.exit(1)
