"""Who is acting in a flow run: the one place every flow asks.

With sign-in off (``SELECTIVE_SYNC_SIGN_IN=off``: the embedded default, the CLI's own runs,
tests on Prefect's test harness) the acting user is the name the run was given (the
``requested_by`` parameter), normalised. With sign-in through the proxy
(``SELECTIVE_SYNC_SIGN_IN=proxy``, what ``selective-sync ui`` runs) it is the user the
Prefect server's gateway stamped on the run when a signed-in person created it (the
``acting-user:<name>`` tag, ``flows.gateway``); the name in the parameters is ignored.
A subflow (created by a run already authorised, with the service token) acts as the name
its parent passes. Either way a run the scheduler created acts as the
scheduled-reconciliation user, and any other run without a user is refused.
"""

from __future__ import annotations

from typing import Any

from prefect.context import FlowRunContext

from selective_sync.errors import BadInput
from selective_sync.identity import stamp_of
from selective_sync.reconcile import REQUESTER
from selective_sync.rights import normalize_user
from selective_sync.settings import get_settings


def acting_user(claimed: str | None = None) -> str:
    """The user this run acts as: its stamp with sign-in on, else the name it claims."""
    run = _flow_run()
    if get_settings().sign_in == "proxy":
        stamped = stamp_of(getattr(run, "tags", None))
        if len(set(stamped)) > 1:
            raise BadInput(f"this run carries more than one acting user: {sorted(set(stamped))}")
        if stamped:
            return normalize_user(stamped[0], "the run's acting-user stamp")
        if _scheduled(run):  # whatever name the deployment's parameters carry
            return REQUESTER
        if getattr(run, "parent_task_run_id", None) is None:
            raise BadInput(
                "this run has no signed-in user: with sign-in on, start it through the "
                f"sign-in address; only scheduled runs act without one (as {REQUESTER!r})"
            )
    if _given(claimed):
        return normalize_user(claimed)  # a name, or a clear error for anything else
    if _scheduled(run):
        return REQUESTER
    raise BadInput(
        "user name is empty: say who is acting (Requested by); only scheduled runs may "
        f"leave it empty, and act as {REQUESTER!r}"
    )


def display_user(params: dict[str, Any]) -> str:
    """Who a run's name says it is by: the stamp (sign-in on) or ``requested_by``."""
    if get_settings().sign_in == "proxy":
        stamped = stamp_of(getattr(_flow_run(), "tags", None))
        if stamped:
            return stamped[0]
    return str(params.get("requested_by") or "")


def _given(claimed: str | None) -> bool:
    return claimed is not None and not (isinstance(claimed, str) and not claimed.strip())


def _flow_run():
    context = FlowRunContext.get()
    return context.flow_run if context is not None else None


def _scheduled(run) -> bool:
    """Whether this flow run was created by a deployment's schedule."""
    return bool(run is not None and getattr(run, "auto_scheduled", False))
