"""What every CLI command shares: the acting user, and errors printed as one clear line.

Trust model of the command line: it acts as the OS user who runs it (``getpass.getuser()``),
and ``--user`` names someone else explicitly. It trusts its caller, because whoever can run
it with the database credentials in its environment can do anything anyway (read and write
the databases, the rights store included). The rights checks it makes, for the district each
command touches, protect against mistakes (the wrong district, a delete meant for someone
else) and give the audit trail: every change of rights and every refusal is recorded with
the user it acted as. The web entry points do not trust a typed name (see the trust model
in docs/reliability.md).
"""

from __future__ import annotations

import getpass
import logging
import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import SelectiveSyncError

if TYPE_CHECKING:
    from ..rights import Actor

console = Console()
err_console = Console(stderr=True)


def default_user() -> str:
    return getpass.getuser()


UserOption = typer.Option(
    None,
    "--user",
    "-u",
    help="Act as this user instead of the OS user (the rights checked are theirs).",
    show_default=False,
)


def resolve_user(user: str | None) -> str:
    return (user or default_user()).strip()


def acting(user: str | None, command: str) -> Actor:
    """The acting user of ``command`` (``--user`` or the OS user) with their grants, read
    once; its checks and refusals name the entry point ``cli:<command>``."""
    from ..rights import authorise

    return authorise(resolve_user(user), entry_point=f"cli:{command}")


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
