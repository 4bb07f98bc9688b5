"""The sync ledger: what every selective sync did, kept in the state database.

Owns the record of requests and key outcomes written *with the data*: a key's outcome row
is inserted in the same transaction as the key's rows (``recorder``), so after any crash
the ledger says exactly which keys a request wrote; a request's row (``requests``) is
opened when the request starts and closed when it ends, with a heartbeat that tells a
live request from a dead one. The tables are part of the state schema
(``selective_sync.schema``, migrations ``state_0002`` and ``state_0003``, which adds
``origin``: a request the command line ran itself, or the nightly reconciliation ran inside
a district's reconciliation, has no Prefect flow run of its own).
"""

from .recorder import KeyRecorder, RecordedKey
from .requests import (
    CLI_ORIGIN,
    NIGHTLY_ORIGIN,
    Heartbeat,
    LedgerRequest,
    delete_request,
    find_requests,
    finish_request,
    heartbeat,
    keys_done,
    mark_ended,
    open_request,
    read_keys,
    read_request,
    read_requests,
    unfinished_requests,
)

__all__ = [
    "CLI_ORIGIN",
    "Heartbeat",
    "KeyRecorder",
    "NIGHTLY_ORIGIN",
    "delete_request",
    "find_requests",
    "keys_done",
    "mark_ended",
    "LedgerRequest",
    "RecordedKey",
    "finish_request",
    "heartbeat",
    "open_request",
    "read_keys",
    "read_request",
    "read_requests",
    "unfinished_requests",
]
