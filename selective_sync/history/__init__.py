"""The Sync History: one entry per Selective Sync request.

It owns the entry model and its statuses (``entry``: what a person sees per request, built
from the run's facts and artifacts), and the codec between a ``SyncResult`` and the
entry's artifact content (``codec``: summary markdown, per-key outcome rows, artifact
keys). Entries are read from the ledger in the state database (``ledger``) and listed,
shown, deleted and cleared by ``store.LedgerHistoryStore``, which reaches the Prefect API
(through the ``FlowRuns`` the orchestration layer implements) only for a flow run's own
artifacts and run; nothing here imports Prefect.
"""
