"""The empty flow bench/latency.py serves beside selective-sync: Prefect's floor.

A flow that does nothing, served (and deployed on the work pool) exactly as the tool's
deployments are, so that its create_flow_run -> Completed time is what Prefect itself
needs to start any flow run in the same set-up, on the same server, in the same run.
"""

from prefect import flow


@flow(name="bench-empty")
def empty() -> None:
    """Do nothing: the time of this run is Prefect's own fixed cost."""
