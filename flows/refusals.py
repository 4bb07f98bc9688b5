"""How a flow run ends on a refusal or bad input: Failed, with the error's one line.

A refusal is no crash: raised out of a flow, Prefect would log its traceback on the run
page under the message an administrator needs. The flows a person starts from a form
end through ``refused`` instead; callers still get the error (``state.result()``).
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.states import Failed, State

from selective_sync.errors import SelectiveSyncError


def refused(exc: SelectiveSyncError) -> State:
    """End the run Failed with the error's one line (no traceback: it is no crash); the
    caller of the flow still gets ``exc`` raised, or returned by ``state.result()``."""
    line = " ".join(str(exc).split()) or type(exc).__name__  # all of it, on one line
    get_run_logger().error("%s", line)
    return Failed(message=line, data=exc)
