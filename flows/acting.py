"""Who is acting in a flow run: the one place every flow asks.

Today the acting user is the name the run was given (the ``requested_by`` parameter of the
form or the API call), normalised; a run the scheduler created without one acts as the
scheduled-reconciliation user. The sign-in work replaces the body of ``acting_user`` with
the user the server stamped on the run, so no flow changes when it does.
"""

from __future__ import annotations

from prefect.context import FlowRunContext

from selective_sync.errors import BadInput
from selective_sync.reconcile import REQUESTER
from selective_sync.rights import normalize_user


def acting_user(claimed: str | None) -> str:
    """The user this run acts as, given the name it claims (``requested_by``)."""
    if claimed is not None and not (isinstance(claimed, str) and not claimed.strip()):
        return normalize_user(claimed)  # a name, or a clear error for anything else
    if _scheduled():
        return REQUESTER
    raise BadInput(
        "user name is empty: say who is acting (Requested by); only scheduled runs may "
        f"leave it empty, and act as {REQUESTER!r}"
    )


def _scheduled() -> bool:
    """Whether this flow run was created by a deployment's schedule."""
    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return bool(run is not None and getattr(run, "auto_scheduled", False))
