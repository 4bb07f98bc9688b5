"""Flows that delete Sync History entries, so it can be done from the Prefect UI too."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.history_store import clear, delete_entry
from selective_sync.rights import Right, authorise


@flow(name="delete-history-entry", validate_parameters=True)
def delete_history_entry(run_id: str, requested_by: str) -> str:
    """Delete one Sync History entry: its artifacts and its selective-sync run.

    Args:
        run_id: The selective-sync run to delete (its id, or the id's first characters).
        requested_by: Who asks; needs the D right.
    """
    logger = get_run_logger()
    # Refused here, before the run is even looked up.
    actor = authorise(requested_by, Right.D)
    entry = delete_entry(run_id, user=actor)
    logger.info(
        "Deleted Sync History entry %s (%s, requested by %s) for %s",
        entry.run_id,
        entry.run_name,
        entry.requested_by,
        requested_by,
    )
    return entry.run_id


@flow(name="clear-sync-history", validate_parameters=True)
def clear_history(requested_by: str, district: int | None = None) -> int:
    """Delete every finished Sync History entry of one district.

    Args:
        requested_by: Who asks; needs the D right.
        district: District number (default: the district this deployment serves). Other
            districts' entries are never touched.
    """
    logger = get_run_logger()
    actor = authorise(requested_by, Right.D)
    result = clear(district, user=actor)
    logger.info(
        "Cleared %s Sync History entries of district %s for %s",
        len(result.deleted),
        result.district,
        requested_by,
    )
    if result.skipped:
        logger.warning(
            "Left %s entries still in progress: %s",
            len(result.skipped),
            ", ".join(e.run_id for e in result.skipped),
        )
    return len(result.deleted)
