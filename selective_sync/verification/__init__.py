"""Verification: which records differ between a district and the state, and the stored
Verification Summary.

It owns the engine (``engine``: each side digests every key's whole object in its own SQL,
``digest``; the digests are merged by key in bounded windows and full rows are read only
for keys that differ), the SQL normalisation the registry declares (``normalise``), the codec
between typed results and the stored summary's artifact rows, with the accuracy trend
(``codec``), the stored summary's record in the state database (``records``, read and
written through ``store.DatabaseSummaryStore`` by the CLI and the flows alike), the
plain-data forms used by ``summary --json`` and the artifacts (``format``), and a whole
verification brought up to date by a later one of some keys (``recheck``: the nightly's
summary after its syncs).
"""

from selective_sync.verification.engine import verify_district, verify_object

__all__ = ["verify_district", "verify_object"]
