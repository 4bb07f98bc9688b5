"""The View History table: a district's Sync History as one markdown table, newest first.

It is the UI's counterpart of ``selective-sync history list``: built from the same entries
and written as the latest version of the ``sync-history-<district>`` artifact. It is a
*markdown* artifact holding a markdown table, not a table artifact, because neither Prefect
UI renders links inside a table artifact's cells (the V2 UI prints each cell as plain,
truncated text), while both render a markdown table with clickable links.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from selective_sync.history.entry import HistoryEntry
from selective_sync.text import format_timestamp, md_escape

TABLE_COLUMNS = ("Requested", "User", "Status", "Object", "Keys", "Records", "Run", "Reports")
# A table of every request ever made would grow without bound; older ones stay listed by
# ``selective-sync history list --limit N``.
TABLE_ROWS = 200
KEYS_IN_CELL = 3


@dataclass(frozen=True)
class RowLinks:
    """Where a row links to: the run's page in the Prefect UI and its stored reports."""

    run: str | None
    """None for a request the command line ran itself: it has no run in Prefect."""
    pdf: str | None = None
    docx: str | None = None


def table_key(district: int) -> str:
    """The artifact key of the district's View History table."""
    return f"sync-history-{district}"


ORIGIN_MARKS = {"cli": "CLI", "nightly": "nightly"}
"""How the table marks a request with no run page of its own, by its ledger origin."""


def table_description(district: int, district_name: str | None) -> str:
    name = f" {md_escape(district_name)}" if district_name else ""
    return f"Sync History of district {district}{name}: every request, newest first"


def keys_cell(keys: Sequence[int], shown: int = KEYS_IN_CELL) -> str:
    """``101, 102, 103 … (10 keys)``: the first few keys and how many there are."""
    if not keys:
        return "(none)"
    text = ", ".join(str(k) for k in keys[:shown])
    if len(keys) > shown:
        text += " …"
    noun = "key" if len(keys) == 1 else "keys"
    return f"{text} ({len(keys):,} {noun})"


def _link(text: str, url: str | None) -> str:
    # Link targets are built here (the UI's run page, signed report URLs): no user text.
    return f"[{md_escape(text)}]({url})" if url else ""


def table_row(entry: HistoryEntry, links: RowLinks) -> str:
    reports = " · ".join(
        link for link in (_link("PDF", links.pdf), _link("DOCX", links.docx)) if link
    )
    mark = ORIGIN_MARKS.get(entry.origin or "", "CLI")
    cells = (
        md_escape(format_timestamp(entry.requested_at)),
        md_escape(entry.requested_by),
        md_escape(entry.status),
        md_escape(entry.object),
        md_escape(keys_cell(entry.keys)),
        md_escape(entry.records),
        _link(entry.run_name or entry.short_id, links.run)
        or f"{md_escape(entry.run_name or entry.short_id)} ({mark})",
        reports or "-",
    )
    return "| " + " | ".join(cells) + " |"


def history_table_markdown(
    district: int,
    district_name: str | None,
    entries: Sequence[HistoryEntry],
    links: Mapping[str, RowLinks],
    more: bool = False,
) -> str:
    """The table of ``entries`` (newest first); ``more`` says older entries were left out.

    Deterministic for the same entries and links (no "generated at" line), so a writer can
    tell whether the stored table is still current by comparing texts.
    """
    name = f" {md_escape(district_name)}" if district_name else ""
    lines = [
        f"# Sync History: district {district}{name}",
        "",
        f"{len(entries):,} request{'s' if len(entries) != 1 else ''}, newest first. "
        "Open a run for its logs and per-key outcomes; the reports are the Sync Request "
        "History of the run.",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
        *(table_row(e, links[e.run_id]) for e in entries),
    ]
    if not entries:
        lines.append("| " + " | ".join(["(no requests)"] + [""] * (len(TABLE_COLUMNS) - 1)) + " |")
    if any(links[e.run_id].run is None for e in entries):
        lines += [
            "",
            "A request marked (CLI) was run with the command line, one marked (nightly) by "
            "the nightly reconciliation within its district's run: it has no run page of its "
            "own; `selective-sync history show RUN` shows its per-key outcomes, "
            "`selective-sync report RUN` makes its report.",
        ]
    if more:
        lines += [
            "",
            f"Only the newest {len(entries):,} requests are shown: "
            "`selective-sync history list --limit N` lists older ones.",
        ]
    return "\n".join(lines)
