"""The plain-Python sync core: parse IDs, copy keys district -> state, diagnose, retry.

Nothing here knows about Prefect; the flows, the CLI and the tests share these functions.
"""

from .copy import (
    DEFAULT_RETRY,
    TRANSIENT_EXHAUSTED,
    BatchAborted,
    sync_key,
    sync_key_with_retries,
    sync_keys,
    sync_with_dependencies,
)
from .diagnose import Diagnosis, diagnose_failure, find_problems
from .faults import RetryPolicy, TransientFault, is_transient
from .keys import MAX_ID, parse_ids
from .plan import Plan, normalise, plan_changes, read_district, read_state, read_state_many

__all__ = [
    "DEFAULT_RETRY",
    "MAX_ID",
    "TRANSIENT_EXHAUSTED",
    "BatchAborted",
    "Diagnosis",
    "Plan",
    "RetryPolicy",
    "TransientFault",
    "diagnose_failure",
    "find_problems",
    "is_transient",
    "normalise",
    "parse_ids",
    "plan_changes",
    "read_district",
    "read_state",
    "read_state_many",
    "sync_key",
    "sync_key_with_retries",
    "sync_keys",
    "sync_with_dependencies",
]
