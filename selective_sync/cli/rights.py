"""``selective-sync rights``: bootstrap the first administrator, grant, revoke and list."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from ..rights import RIGHT_MEANING, Right, RightsStore, format_rights
from .common import UserOption, console, resolve_user

T = TypeVar("T")

app = typer.Typer(
    help=(
        "Who may do what: R see the tool, history and reports; W run syncs (and read); "
        "D delete/clear history and administer rights."
    ),
    no_args_is_help=True,
)

UserArg = Annotated[str, typer.Argument(help="The user whose rights change.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _with_store(action: Callable[[RightsStore], T]) -> T:
    store = RightsStore.from_settings()
    try:
        return action(store)
    finally:
        store.close()


def _said(rights: str) -> str:
    letters = [Right(ch) for ch in rights if ch in Right.__members__]
    return "; ".join(f"{r.value}: {RIGHT_MEANING[r]}" for r in letters) or "none"


@app.command()
def bootstrap(
    user: Annotated[str, typer.Argument(help="The first administrator.", show_default=False)],
) -> None:
    """Make USER the first administrator (RWD). Refused once anyone holds D."""
    entry = _with_store(lambda s: s.bootstrap_admin(user))
    # Text objects, never markup: a user name is data and must print literally.
    console.print(Text.assemble("bootstrapped ", (entry.user, "bold"), " as administrator: RWD"))


@app.command()
def grant(
    user: UserArg,
    rights: Annotated[
        str, typer.Argument(help="Exactly the rights USER will hold, e.g. RW or RWD.")
    ],
    actor: str | None = UserOption,
) -> None:
    """Set USER's rights to exactly RIGHTS (letters from R, W, D). Needs D."""
    acting = resolve_user(actor)
    entry = _with_store(lambda s: s.grant(acting, user, rights))
    console.print(
        Text.assemble(
            (entry.user, "bold"), " now holds ", (entry.rights, "bold"), f" ({_said(entry.rights)})"
        )
    )


@app.command()
def revoke(user: UserArg, actor: str | None = UserOption) -> None:
    """Remove every right of USER. Needs D."""
    acting = resolve_user(actor)
    removed = _with_store(lambda s: s.revoke(acting, user))
    console.print(
        Text.assemble(
            "revoked ", (format_rights(removed), "bold"), " from ", (user.strip(), "bold"),
            "; they now hold no rights",
        )
    )  # fmt: skip


@app.command("list")
def list_(actor: str | None = UserOption, as_json: JsonOption = False) -> None:
    """Every user's rights. Needs R (or W)."""
    acting = resolve_user(actor)
    entries = _with_store(lambda s: s.list_rights(acting))
    if as_json:
        # Plain stdout: rich would wrap and colour what a script parses.
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        console.print("no user holds any right")
        return
    table = Table(title="Selective Sync rights")
    for heading in ("User", "Rights", "Granted by", "Granted at (UTC)"):
        table.add_column(heading)
    for e in entries:
        table.add_row(
            Text(e.user),
            Text(e.rights),
            Text(e.granted_by),
            Text(e.granted_at.strftime("%Y-%m-%d %H:%M:%S")),
        )
    console.print(table)


@app.command()
def audit(
    actor: str | None = UserOption,
    limit: Annotated[int, typer.Option(min=1, help="How many entries, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The latest bootstraps, grants and revokes, newest first. Needs R (or W)."""
    acting = resolve_user(actor)
    entries = _with_store(lambda s: s.audit_log(acting, limit))
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    table = Table(title="Rights changes")
    for heading in ("At (UTC)", "By", "Action", "User", "Before", "After"):
        table.add_column(heading)
    for e in entries:
        table.add_row(
            Text(e.at.strftime("%Y-%m-%d %H:%M:%S")),
            Text(e.actor),
            Text(e.action),
            Text(e.user),
            Text(e.old_rights or "-"),
            Text(e.new_rights or "-"),
        )
    console.print(table)
