"""A tally of what the reliability and security suites tried, printed at the end of the run.

Tests add to it (``tally.add("faults_tried")``); the totals are printed in pytest's terminal
summary and written to ``$SELECTIVE_SYNC_TALLY_FILE`` (default ``bench/out/reliability.json``)
so the reliability table of docs/reliability.md can be filled from a real run.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

COUNTERS = {
    "faults_tried": "faults tried",
    "runs_survived": "runs survived (ended as specified after a fault)",
    "keys_checked": "keys checked after a fault",
    "rows_lost": "rows lost or half-written",
    "ledger_keys_checked": "keys checked against the ledger after a fault",
    "ledger_rows_disagreeing": "ledger rows that disagree with the data",
    "other_district_checks": "other-district checksums compared",
    "bad_inputs_tried": "bad inputs tried (hypothesis examples and fixed cases)",
    "hostile_values_checked": "hostile values synced and read back from both reports",
    "rights_refusals_tried": "rights refusals tried (each checked to change nothing)",
    "masking_checks": "places checked for a masked password",
}

_counts: Counter[str] = Counter()


def add(counter: str, n: int = 1) -> None:
    """Count ``n`` more of ``counter`` (one of COUNTERS)."""
    if counter not in COUNTERS:
        raise KeyError(f"unknown tally counter {counter!r}")
    _counts[counter] += n


def totals() -> dict[str, int]:
    return {name: _counts.get(name, 0) for name in COUNTERS}


def report_lines() -> list[str]:
    if not _counts:
        return []
    return [f"{COUNTERS[name]}: {value:,}" for name, value in totals().items()]


def write_file() -> Path | None:
    if not _counts:
        return None
    default = Path(__file__).resolve().parent.parent / "bench" / "out" / "reliability.json"
    path = Path(os.environ.get("SELECTIVE_SYNC_TALLY_FILE", default))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(totals(), indent=2) + "\n")
    return path


def merge(counts: dict[str, int]) -> None:
    """Add the totals a pytest-xdist worker sent at its end to this process's."""
    for name, n in counts.items():
        add(name, n)
