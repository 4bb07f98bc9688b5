"""Who the sign-in entry admits, and which district a Prefect flow run belongs to.

One installation serves some districts (``configured_districts``). A signed-in person is
admitted only when they hold R on every one of them (state staff, with R on all districts,
always are): the Prefect UI shows every run, artifact and log of the installation to
whoever it admits, so district staff get the UI through an installation of their own
district (the per-district installation, as the district edition of the product this
replaces runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..rights import ALL_DISTRICTS, Actor, Right


def admission_refusal(actor: Actor, served: list[int]) -> str | None:
    """Why ``actor`` may not use this installation's UI and API, or None when they may."""
    missing = [number for number in served if not actor.holds(Right.R, number)]
    if not missing:
        return None
    where = ", ".join(str(n) for n in missing)
    return (
        f"{actor.name} may not use this installation: it serves district(s) "
        f"{', '.join(str(n) for n in served)} and {actor.name} holds no R on {where}. "
        "District staff use the installation of their own district; ask an administrator "
        "for R there (or on all districts, for state staff)"
    )


def run_district(parameters: Mapping[str, Any] | None, default: int) -> int:
    """The district a flow run of this tool acts on: its ``district`` parameter, the
    installation's district for 0, all districts for a state-wide run (``all_districts``)
    or a run with no district at all."""
    params = parameters or {}
    if params.get("all_districts"):
        return ALL_DISTRICTS
    if "district" not in params:
        return ALL_DISTRICTS
    value = params.get("district")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return ALL_DISTRICTS
    return value or default
