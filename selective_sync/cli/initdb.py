"""``selective-sync init-db``: create or upgrade the schemas on the configured databases."""

from __future__ import annotations

from enum import StrEnum

import typer

from .common import console


class SideChoice(StrEnum):
    district = "district"
    state = "state"
    both = "both"


def init_db(
    side: SideChoice = typer.Option(
        SideChoice.both, "--side", help="Which databases to create or upgrade."
    ),
) -> None:
    """Create or upgrade the district and state schemas (versioned with Alembic).

    District side: every enabled district database (SELECTIVE_SYNC_DISTRICT_URL, _DISTRICTS,
    _DISTRICTS_FILE).

    State side: SELECTIVE_SYNC_STATE_URL; fills its code tables, registers every district.

    Safe to run again: a database at the newest revision is left as it is.
    """
    from ..initdb import upgrade
    from ..settings import configured_districts, get_settings, load_districts_file

    settings = get_settings()
    districts = configured_districts(settings)
    if side in (SideChoice.district, SideChoice.both):
        done: set[str] = set()
        for district in districts:
            if district.url in done:
                continue
            done.add(district.url)
            say(upgrade(district.url, "district").describe())
    if side in (SideChoice.state, SideChoice.both):
        registered = {d.number: d.name for d in districts}
        if settings.districts_file:
            # The state knows every district of the file, disabled ones too.
            for d in load_districts_file(settings.districts_file):
                registered.setdefault(d.number, d.name)
        result = upgrade(settings.resolved_state_url, "state", districts=registered)
        say(result.describe())
        say(
            "registered districts: "
            + ", ".join(f"{n} {name}" for n, name in sorted(registered.items()))
        )


def say(line: str) -> None:
    console.print(line, highlight=False, soft_wrap=True, markup=False)
