"""The Sync History entry's content (artifact markdown and outcome table), from a SyncResult,
and the inverse readers the history uses to get it back from the artifacts."""

from __future__ import annotations

import re
from typing import Any

from selective_sync.models import KeyOutcome, Outcome, RequestStatus, SyncResult
from selective_sync.text import format_timestamp, md_escape

KEYS_SHOWN = 50
# "request" holds each run's summary; "history" is the district's View History table (a
# run's summary before the table existed, still read from older runs).
HISTORY_KINDS = ("request", "history", "outcomes", "progress")
SUMMARY_KINDS = ("request", "history")
_KEY = re.compile(r"^sync-(?P<kind>[a-z]+)-(?P<district>[0-9]+)$")
_MD_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def request_status(result: SyncResult) -> RequestStatus:
    """Complete when every key was processed; Failed when every key hit a database fault."""
    if result.keys and all(k.outcome is Outcome.FAILED and k.transient for k in result.keys):
        return RequestStatus.FAILED
    return RequestStatus.COMPLETE


def history_key(district_number: int, kind: str = "request") -> str:
    """Artifact key of this district's history (lowercase and dashes only)."""
    return f"sync-{kind}-{district_number}"


def parse_history_key(key: str | None) -> tuple[str, int] | None:
    """``("history", 275)`` for ``sync-history-275``; None for any other artifact key."""
    match = _KEY.match(key or "")
    if not match or match["kind"] not in HISTORY_KINDS:
        return None
    return match["kind"], int(match["district"])


def _unmd(text: str) -> str:
    return _MD_ESCAPED.sub(r"\1", text)


def parse_summary(markdown: str) -> dict[str, str]:
    """The ``| Name | value |`` rows of a :func:`history_markdown` summary, unescaped."""
    rows: dict[str, str] = {}
    for line in markdown.splitlines():
        # Every pipe inside a cell is escaped (``\|``), so " | " only ever separates cells.
        if not (line.startswith("| ") and line.endswith(" |")):
            continue
        cells = line[2:-2].split(" | ")
        if len(cells) == 2 and cells[0]:
            rows[_unmd(cells[0])] = _unmd(cells[1])
    return rows


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
        f"# Sync Request History: {md_escape(result.object)} x{result.total}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {md_escape(value)} |" for name, value in rows),
        "",
        "Outcomes: " + ", ".join(f"{o.value} {n}" for o, n in counts.items()),
    ]
    return "\n".join(lines)


def outcome_rows(result: SyncResult) -> list[dict[str, Any]]:
    # Table cells hold text: no NULL reason, parents as one comma-separated cell.
    rows = [k.as_dict() for k in result.keys]
    for row in rows:
        row["reason"] = row["reason"] or ""
        row["parents_synced"] = ", ".join(row["parents_synced"])
    return rows


def outcomes_from_rows(rows: list[dict[str, Any]]) -> list[KeyOutcome]:
    """The per-key outcomes back from :func:`outcome_rows` (the table artifact's data)."""
    return [
        KeyOutcome(
            key=int(row["key"]),
            outcome=Outcome(row["outcome"]),
            reason=row.get("reason") or None,
            attempts=int(row.get("attempts") or 1),
            parents_synced=[p for p in (row.get("parents_synced") or "").split(", ") if p],
        )
        for row in rows
    ]


def outcome_line(result: SyncResult, status: str | None = None) -> tuple[str, str]:
    """The finished run's state name and message, e.g. ``Complete · Records 2/3`` and
    ``Complete · Records 2/3 · 1 failed, 1 synced`` (what the runs list and run page show)."""
    name = f"{status or request_status(result)} · Records {result.succeeded}/{result.total}"
    if result.dry_run:
        name += " · dry run"
    counts = [(o, sum(1 for k in result.keys if k.outcome is o)) for o in Outcome]
    # Failures first: they are what a person looks for.
    counts.sort(key=lambda c: c[0] is not Outcome.FAILED)
    details = ", ".join(f"{n:,} {o.value.replace('_', ' ')}" for o, n in counts if n)
    return name, f"{name} · {details}" if details else name
