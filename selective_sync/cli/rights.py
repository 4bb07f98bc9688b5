"""``selective-sync rights``: bootstrap the first administrator, grant and revoke rights on a
district or on all districts, list them, and read the audit of changes and refusals."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

import typer
from rich.text import Text

from ..errors import BadInput
from ..rights import (
    ALL_DISTRICTS,
    RIGHT_MEANING,
    Right,
    RightsStore,
    district_text,
    format_rights,
)
from .common import UserOption, console, resolve_user
from .layout import Column, print_rows

T = TypeVar("T")

app = typer.Typer(
    help=(
        "Who may do what, on which district: R see the tool, history and reports; W run "
        "syncs (and read); D delete/clear history and administer rights. A grant is on one "
        "district (--district N) or on all districts (--all-districts, state staff)."
    ),
    no_args_is_help=True,
)

UserArg = Annotated[str, typer.Argument(help="The user whose rights change.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DistrictOption = Annotated[
    int | None,
    typer.Option("--district", min=1, help="One district, by number.", show_default=False),
]
AllDistrictsOption = Annotated[
    bool, typer.Option("--all-districts", help="All districts (state staff).")
]
FilterDistrict = Annotated[
    int | None,
    typer.Option("--district", min=1, help="Only this district.", show_default=False),
]
FilterAll = Annotated[
    bool, typer.Option("--all-districts", help="Only what concerns all districts.")
]
OfOption = Annotated[
    str | None, typer.Option("--of", help="Only this user's entries.", show_default=False)
]
LimitOption = Annotated[int, typer.Option(min=1, help="How many entries, newest first.")]


def _with_store(action: Callable[[RightsStore], T]) -> T:
    store = RightsStore.from_settings()
    try:
        return action(store)
    finally:
        store.close()


def _where(district: int | None, all_districts: bool, *, required: bool) -> int | None:
    """The district the options name (``ALL_DISTRICTS`` for all); None when none is named
    and none is required."""
    if district is not None and all_districts:
        raise BadInput("give either --district N or --all-districts, not both")
    if all_districts:
        return ALL_DISTRICTS
    if district is None and required:
        # No default: a grant meant for one district must never silently reach them all.
        raise BadInput(
            "say where: --district N (one district) or --all-districts (every district, "
            "for state staff)"
        )
    return district


def _said(rights: str) -> str:
    letters = [Right(ch) for ch in rights if ch in Right.__members__]
    return "; ".join(f"{r.value}: {RIGHT_MEANING[r]}" for r in letters) or "none"


def _scope_cell(district: int | None) -> str:
    if district is None:
        return "-"
    return "all districts" if district == ALL_DISTRICTS else str(district)


def _table(title: str, headings: Sequence[str], rows: list[Sequence[str]]) -> None:
    # A table when it fits the terminal, else one block per row; cells print literally
    # (user names and what was asked are data, never markup). What was asked may wrap.
    columns = [Column(h, wrap=h == "Asked") for h in headings]
    print_rows(columns, rows, title=title, out=console)


@app.command()
def bootstrap(
    user: Annotated[str, typer.Argument(help="The first administrator.", show_default=False)],
) -> None:
    """Make USER the first administrator (RWD on all districts); refused once there is one.

    Refused once anyone holds D on all districts."""
    entry = _with_store(lambda s: s.bootstrap_admin(user))
    console.print(
        Text.assemble(
            "bootstrapped ", (entry.user, "bold"), " as administrator: RWD on all districts"
        )
    )


@app.command()
def grant(
    user: UserArg,
    rights: Annotated[
        str, typer.Argument(help="Exactly the rights USER will hold there, e.g. RW or RWD.")
    ],
    district: DistrictOption = None,
    all_districts: AllDistrictsOption = False,
    actor: str | None = UserOption,
) -> None:
    """Set USER's rights on --district N, or on --all-districts, to exactly RIGHTS. Needs D.

    RIGHTS are letters from R, W, D. D on a district grants on that district only; a grant
    on all districts needs D on all districts."""
    where = _where(district, all_districts, required=True)
    acting = resolve_user(actor)
    entry = _with_store(
        lambda s: s.grant(acting, user, rights, district=where, entry_point="cli:rights grant")
    )
    console.print(
        Text.assemble(
            (entry.user, "bold"),
            " now holds ",
            (entry.rights, "bold"),
            f" on {district_text(entry.district)} ({_said(entry.rights)})",
        )
    )


@app.command()
def revoke(
    user: UserArg,
    district: DistrictOption = None,
    all_districts: AllDistrictsOption = False,
    actor: str | None = UserOption,
) -> None:
    """Remove USER's grant on --district N, or on --all-districts. Needs D there."""
    where = _where(district, all_districts, required=True)
    acting = resolve_user(actor)
    removed = _with_store(
        lambda s: s.revoke(acting, user, district=where, entry_point="cli:rights revoke")
    )
    console.print(
        Text.assemble(
            "revoked ", (format_rights(removed), "bold"), " on ", district_text(where),
            " from ", (user.strip(), "bold"),
        )
    )  # fmt: skip


@app.command("list")
def list_(
    district: FilterDistrict = None,
    all_districts: FilterAll = False,
    actor: str | None = UserOption,
    as_json: JsonOption = False,
) -> None:
    """The grants you may read. Needs R (or W).

    With R on all districts, every grant; else the grants on your districts."""
    where = _where(district, all_districts, required=False)
    acting = resolve_user(actor)
    entries = _with_store(
        lambda s: s.list_rights(acting, district=where, entry_point="cli:rights list")
    )
    if as_json:
        # Plain stdout: rich would wrap and colour what a script parses.
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        console.print("no grant to show")
        return
    _table(
        "Selective Sync rights",
        ("User", "District", "Rights", "Granted by", "Granted at (UTC)"),
        [
            (
                e.user,
                _scope_cell(e.district),
                e.rights,
                e.granted_by,
                e.granted_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for e in entries
        ],
    )


@app.command()
def audit(
    of: OfOption = None,
    district: FilterDistrict = None,
    all_districts: FilterAll = False,
    limit: LimitOption = 50,
    actor: str | None = UserOption,
    as_json: JsonOption = False,
) -> None:
    """The latest changes of rights you may read, newest first. Needs R (or W).

    Bootstraps, grants, revokes and migrations; with R on all districts every change, else
    the changes on your districts."""
    where = _where(district, all_districts, required=False)
    acting = resolve_user(actor)
    entries = _with_store(
        lambda s: s.audit_log(
            acting, limit, user=of, district=where, entry_point="cli:rights audit"
        )
    )
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    _table(
        "Rights changes",
        ("At (UTC)", "By", "Action", "User", "District", "Before", "After"),
        [
            (
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.actor,
                e.action,
                e.user,
                _scope_cell(e.district),
                e.old_rights or "-",
                e.new_rights or "-",
            )
            for e in entries
        ],
    )


@app.command()
def refusals(
    of: OfOption = None,
    district: FilterDistrict = None,
    all_districts: FilterAll = False,
    limit: LimitOption = 50,
    actor: str | None = UserOption,
    as_json: JsonOption = False,
) -> None:
    """The latest refused requests, newest first. Needs D (administrators).

    Who, through which entry point, which right on which district, what they asked (the
    whole message with --json). With D on all districts every refusal, else the refusals
    on your districts."""
    where = _where(district, all_districts, required=False)
    acting = resolve_user(actor)
    entries = _with_store(
        lambda s: s.refusals(
            acting, user=of, district=where, limit=limit, entry_point="cli:rights refusals"
        )
    )
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        console.print("no refusal recorded")
        return
    _table(
        "Refused requests",
        ("At (UTC)", "User", "Entry point", "Right", "District", "Asked"),
        [
            (
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.user,
                e.entry_point,
                e.right,
                _scope_cell(e.district),
                e.asked,
            )
            for e in entries
        ],
    )
