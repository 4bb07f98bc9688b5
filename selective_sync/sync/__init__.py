"""The sync core: copy the keys an administrator names from a district to the state.

This package owns everything between a list of IDs and the state's rows equal to the
district's: parsing the IDs (``keys``), how a request's keys become task runs
(``fanout``), reading and comparing rows (``plan``, ``planner``), one key's transaction
with its checked writes and dry runs (``writer``, ``statements``, over the request's
``connection``), parents synced first (``parents``), diagnosing a refusal (``diagnose``),
which faults are transient and how often they are retried (``faults``, ``retry``: the one
place that says which layer retries what), the public entry points (``copy``), per-key
outcomes after task failures and the after-sync verification (``outcomes``), progress
events (``progress``), and a whole request run in this process without Prefect, the
command line's sync (``request``: the flow's steps through the same functions). It knows
nothing of Prefect; the names below are what the tasks, flows and CLI use (tests also
import the submodules directly).
"""

from .copy import sync_key, sync_keys, sync_with_dependencies
from .faults import is_transient
from .keys import parse_ids
from .retry import RetryPolicy

__all__ = [
    "RetryPolicy",
    "is_transient",
    "parse_ids",
    "sync_key",
    "sync_keys",
    "sync_with_dependencies",
]
