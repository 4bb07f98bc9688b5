"""The Sync History entry's content (artifact markdown and outcome table), from a SyncResult."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .models import Outcome, SyncResult

KEYS_SHOWN = 50


def format_timestamp(moment: datetime | None) -> str:
    """One timestamp format for people, everywhere: ``11/28/2026 08:15 PM UTC``."""
    if moment is None:
        return ""
    return moment.strftime("%m/%d/%Y %I:%M %p ") + (moment.tzname() or "UTC")


def request_status(result: SyncResult) -> str:
    """Complete when every key was processed; Failed when every key hit a database fault."""
    if result.keys and all(k.outcome is Outcome.FAILED and k.transient for k in result.keys):
        return "Failed"
    return "Complete"


def history_key(district_number: int, kind: str = "history") -> str:
    """Artifact key of this district's history (lowercase and dashes only)."""
    return f"sync-{kind}-{district_number}"


def _md(text: object) -> str:
    # Markdown table cells: keep a pipe or newline in a name from breaking the table.
    return str(text).replace("|", "\\|").replace("\n", " ")


def history_markdown(result: SyncResult, status: str | None = None) -> str:
    keys = [str(k.key) for k in result.keys]
    shown = ", ".join(keys[:KEYS_SHOWN])
    if len(keys) > KEYS_SHOWN:
        shown += f" and {len(keys) - KEYS_SHOWN:,} more"
    rows = [
        ("Status", status or request_status(result)),
        ("Requested", format_timestamp(result.requested_at)),
        ("Completed", format_timestamp(result.completed_at)),
        ("Keys", shown),
        ("Object", result.object),
        ("Records", f"{result.succeeded}/{result.total}"),
        ("Requested by", result.requested_by),
        ("District", f"{result.district_number} {result.district_name}"),
        ("Check dependencies", "yes" if result.check_dependencies else "no"),
        ("Dry run", "yes" if result.dry_run else "no"),
    ]
    counts = {o: sum(1 for k in result.keys if k.outcome is o) for o in Outcome}
    lines = [
        f"# Sync Request History: {_md(result.object)} x{result.total}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {_md(value)} |" for name, value in rows),
        "",
        "Outcomes: " + ", ".join(f"{o.value} {n}" for o, n in counts.items()),
    ]
    return "\n".join(lines)


def outcome_rows(result: SyncResult) -> list[dict[str, Any]]:
    return [
        {
            "key": k.key,
            "outcome": k.outcome.value,
            "reason": k.reason or "",
            "attempts": k.attempts,
            "parents_synced": ", ".join(k.parents_synced),
        }
        for k in result.keys
    ]
