"""The Sync History: one entry per Selective Sync request.

It owns the entry model and its statuses (``entry``: what a person sees per request, built
from the run's facts and artifacts), and the codec between a ``SyncResult`` and the
entry's artifact content (``codec``: summary markdown, per-key outcome rows, artifact
keys). Reading and deleting entries goes through a ``HistoryStore`` (``store``) that the
orchestration layer implements on the Prefect API; nothing here imports Prefect.
"""
