"""The sync core: copy the keys an administrator names from a district to the state.

This package owns everything between a list of IDs and the state's rows equal to the
district's: parsing the IDs (``keys``), reading and comparing rows (``plan``, ``planner``),
one key's transaction with its checked writes and dry runs (``writer``, ``statements``),
parents synced first (``parents``), diagnosing a refusal (``diagnose``), which faults are
transient and how often they are retried (``faults``, ``retry``: the one place that says
which layer retries what), and the public entry points (``copy``). It knows nothing of
Prefect: the tasks, the CLI and the tests call the names below (tests also import the
submodules directly).
"""

from .copy import BatchAborted, sync_key, sync_keys, sync_with_dependencies
from .faults import TransientFault, first_line, is_transient
from .keys import parse_ids
from .retry import RetryPolicy

__all__ = [
    "BatchAborted",
    "RetryPolicy",
    "TransientFault",
    "first_line",
    "is_transient",
    "parse_ids",
    "sync_key",
    "sync_keys",
    "sync_with_dependencies",
]
