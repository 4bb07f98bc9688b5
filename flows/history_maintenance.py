"""Flows that delete Sync History entries, so it can be done from the Prefect UI too."""

from __future__ import annotations

import contextlib
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.acting import acting_user, display_user
from flows.forms import DistrictNumber, OptionalText, district_or_default, title
from flows.history_store import clear, delete_entry
from flows.refusals import refused
from selective_sync.errors import SelectiveSyncError
from selective_sync.rights import authorise
from selective_sync.settings import get_settings, resolve_district


def _delete_run_name() -> str:
    """E.g. "Delete history entry 3f2a9c1e by alice"."""
    params = flow_run.get_parameters()
    return f"Delete history entry {params.get('run_id')} by {display_user(params)}"


def _clear_run_name() -> str:
    """E.g. "Clear Sync History 275 by alice" (the district resolved when 0)."""
    params = flow_run.get_parameters()
    number = params.get("district")
    # The flow itself reports a bad district; naming the run must not fail on it.
    with contextlib.suppress(Exception):
        number = resolve_district(get_settings(), district_or_default(number)).number
    return f"Clear Sync History {number} by {display_user(params)}"


@flow(name="delete-history-entry", flow_run_name=_delete_run_name, validate_parameters=True)
def delete_history_entry(
    run_id: Annotated[str, title("Run")],
    requested_by: Annotated[OptionalText, title("Requested by")] = "",
) -> str:
    """Delete one Sync History entry: its artifacts and its selective-sync run.

    Args:
        run_id: The selective-sync run to delete: its name (e.g. "PersonIdentity x3 by
            alice"), its id, or the id's first characters.
        requested_by: Who asks; needs the D right on the entry's district.
    """
    logger = get_run_logger()
    try:
        # D is checked on the entry's district once the run is found, before anything goes.
        actor = authorise(acting_user(requested_by), entry_point="flow:delete-history-entry")
        entry = delete_entry(run_id, user=actor)
    except SelectiveSyncError as exc:
        return refused(exc)
    logger.info(
        "Deleted Sync History entry %s (%s, requested by %s) for %s",
        entry.run_id,
        entry.run_name,
        entry.requested_by,
        actor.name,
    )
    return entry.run_id


@flow(name="clear-sync-history", flow_run_name=_clear_run_name, validate_parameters=True)
def clear_history(
    requested_by: Annotated[OptionalText, title("Requested by")] = "",
    district: Annotated[DistrictNumber, title("District")] = 0,
) -> int:
    """Delete every finished Sync History entry of one district.

    Args:
        requested_by: Who asks; needs the D right on the district.
        district: District number; 0 means the district this deployment serves. Other
            districts' entries are never touched.
    """
    logger = get_run_logger()
    try:
        # D is checked on the district, once it is resolved, before anything goes.
        actor = authorise(acting_user(requested_by), entry_point="flow:clear-sync-history")
        result = clear(district_or_default(district), user=actor)
    except SelectiveSyncError as exc:
        return refused(exc)
    logger.info(
        "Cleared %s Sync History entries of district %s for %s",
        len(result.deleted),
        result.district,
        actor.name,
    )
    if result.skipped:
        logger.warning(
            "Left %s entries still in progress: %s",
            len(result.skipped),
            ", ".join(e.run_id for e in result.skipped),
        )
    return len(result.deleted)
