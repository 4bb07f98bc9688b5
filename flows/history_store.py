"""The Sync History's Prefect side: the flow's runs and the UI's View History table.

The record is the ledger in the state database (``selective_sync.ledger``, written with
the data): listing, showing, deleting and clearing go through the core's
``LedgerHistoryStore`` (``selective_sync.history.store``), which reads the ledger alone and
calls ``PrefectRuns`` here only for what Prefect holds: the artifacts and run of a flow
run's entry, runs the ledger does not have (refused before they started, or from before
the ledger), and the district's View History table, a view of the ledger that
``refresh_table`` and ``rebuild_artifacts`` write again. A request the command line ran
itself has no run here; the table shows it from its next rewrite (every run's end,
``selective-sync ui`` starting, ``history rebuild-artifacts``). Every function checks the
acting user's right first (R to read, D to delete), before anything is read or deleted.

Deleting an entry deletes its artifacts, then its flow run, then its report files, and
the ledger rows last: an interrupted delete leaves the entry listed, and deleting it
again finishes the job. Artifacts go before the run because Prefect does not delete a
run's artifacts with the run.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    ArtifactFilterType,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from sqlalchemy.exc import SQLAlchemyError

from flows.api_client import PAGE, api_client, read_all_artifacts
from selective_sync.errors import BadInput, SelectiveSyncError, StoreUnavailable
from selective_sync.history.codec import SUMMARY_KINDS, parse_history_key, parse_summary
from selective_sync.history.entry import (
    FLOW_NAME,
    HistoryEntry,
    RunArtifacts,
    RunFacts,
    build_entry,
)
from selective_sync.history.ledger import LedgerHistory, ledger_history
from selective_sync.history.store import (
    DEFAULT_LIMIT,
    Check,
    ClearResult,
    LedgerHistoryStore,
    refuse_unfinished,
)
from selective_sync.history.table import (
    TABLE_ROWS,
    RowLinks,
    history_table_markdown,
    table_description,
    table_key,
)
from selective_sync.ledger import (
    LedgerRequest,
    finish_request,
    read_request,
    unfinished_requests,
)
from selective_sync.models import RequestStatus
from selective_sync.reports.storage import SYNC_FORMATS, LinkSigner, ReportStorage, StoredReport
from selective_sync.rights import Actor
from selective_sync.settings import Settings, configured_districts, get_settings, resolve_district
from selective_sync.text import first_line

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import Artifact, FlowRun

log = logging.getLogger(__name__)

# Prefect state types of a run that has ended (its request can be closed from it).
ENDED_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
MIN_ID_PREFIX = 4
# A listing reads only these (small) artifacts; the outcome table can hold 10,000 rows.
SUMMARY_TYPES = ["markdown", "progress"]
# Writers of the View History table re-check it this many times (see refresh_table).
TABLE_WRITES = 4
# Where the run links of the table point when Prefect has no UI URL set (an ephemeral API).
DEFAULT_UI_URL = "http://127.0.0.1:4200"


class PrefectRuns:
    """``selective_sync.history.store.FlowRuns`` on the Prefect API."""

    def settle(self, history: LedgerHistory, requests: list[LedgerRequest]) -> int:
        return settle(history, requests)

    def get_entry(self, run: str, *, may_read: Callable[[int], bool], check: Check) -> HistoryEntry:
        settings = get_settings()
        with _client() as client:
            flow_run = _find_run(client, run, list_matches=_listed(settings, may_read))
            check(_run_district(settings, flow_run), str(flow_run.id))
            entry = _entries(client, settings, [flow_run], with_outcomes=True)[0]
            check(entry.district, entry.run_id)
            return entry

    def delete_run(self, run_id: str) -> None:
        with _client() as client:
            _delete_run(client, UUID(run_id))

    def delete_unrecorded(
        self, run: str, *, may_read: Callable[[int], bool], check: Check
    ) -> HistoryEntry:
        settings = get_settings()
        with _client() as client:
            flow_run = _find_run(client, run, list_matches=_listed(settings, may_read))
            check(_run_district(settings, flow_run), str(flow_run.id))
            entry = _entries(client, settings, [flow_run], with_outcomes=False)[0]
            check(entry.district, entry.run_id)
            refuse_unfinished(entry)
            _delete(client, flow_run.id)
            if entry.district is not None:
                _refresh_table(client, settings, entry.district)
            return entry

    def clear_unrecorded(self, district: int, recorded: set[str]) -> int:
        settings = get_settings()
        with _client() as client:
            # Collect first, then delete: deleting while paging would shift the pages.
            gone = [
                entry
                for entry in _prefect_entries(client, settings, district, limit=None)
                if entry.run_id not in recorded and entry.finished
            ]
            for entry in gone:
                _delete(client, UUID(entry.run_id))
        return len(gone)

    def refresh_table(self, district: int) -> None:
        refresh_table(district)


def history_store() -> LedgerHistoryStore:
    """The Sync History on the ledger, with the Prefect API for the flow's runs."""
    return LedgerHistoryStore(PrefectRuns)


def list_entries(
    district: int | None = None, limit: int = DEFAULT_LIMIT, *, user: str | Actor
) -> list[HistoryEntry]:
    """The district's entries from the ledger, newest first (default: the configured
    district). Needs R; needs no Prefect API (but to settle a flow run's request that the
    ledger still has In Progress)."""
    return history_store().list_entries(district, limit, user=user)


def get_entry(run: str, *, user: str | Actor) -> HistoryEntry:
    """The entry of ``run`` (a run id, an id prefix or a run name), with every key. Needs R
    on the entry's district (checked once the run is found, before its entry is read).

    From the ledger; a run the ledger does not have (refused before it started, or from
    before the ledger) is looked up in the Prefect API."""
    return history_store().get_entry(run, user=user)


def delete_entry(run: str, *, user: str | Actor) -> HistoryEntry:
    """Delete one finished entry: its artifacts, its run, its report files, then its ledger
    rows (last, so an interrupted delete is still listed and a repeat finishes). Needs D."""
    return history_store().delete_entry(run, user=user)


def clear(district: int | None = None, *, user: str | Actor) -> ClearResult:
    """Delete every finished entry of one district (default: the configured one). Needs D.

    Entries of other districts are never touched; runs still in progress are left alone.
    Runs of the district that the ledger does not have (refused ones) go too."""
    return history_store().clear(district, user=user)


def rebuild_artifacts(district: int | None = None, *, user: str | Actor) -> int:
    """Write the district's View History table again from the ledger (after Prefect's
    database was lost, moved or cleaned). Needs R. Returns the entries it shows."""
    return history_store().rebuild_artifacts(district, user=user)


def settle(history: LedgerHistory, requests: list[LedgerRequest]) -> int:
    """Close in the ledger the In Progress requests whose run has ended, from what the run
    published (a run that could not reach the state database to record its end, because
    that database was down, published it to the Prefect API). Returns how many it closed.

    Needs the Prefect API only when there is such a request; without one (or when its run
    is gone with Prefect's database) the request's heartbeat decides how it reads. A
    request the command line ran itself has no run: it is never settled here."""
    requests = [r for r in requests if r.has_flow_run]
    if not requests:
        return 0
    closed = 0
    try:
        with _client() as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[UUID(r.run_id) for r in requests])
                ),
                limit=len(requests),
            )
            ended = [r for r in runs if r.state_type and r.state_type.value in ENDED_STATES]
            settings = get_settings()
            for entry in _entries(client, settings, ended, with_outcomes=True):
                finish_request(
                    history.engine,
                    entry.run_id,
                    RequestStatus(entry.status),
                    completed_at=entry.completed_at or datetime.now(UTC),
                    outcomes=[(entry.object, o) for o in entry.outcomes or []],
                    message=entry.failure,
                )
                closed += 1
    except StoreUnavailable as exc:
        log.info("Unfinished requests not settled (no Prefect API): %s", exc)
    return closed


def refresh_table(district: int | None = None, *, clean: bool = False) -> None:
    """Rewrite the district's View History table from the history (no right needed: it is
    called by the runs themselves when they start and end, and it shows what ``history
    list`` shows to anyone who may open the Prefect UI). What runs deleted in the UI left
    behind is cleaned by the next delete, clear or rebuild, or with ``clean``."""
    settings = get_settings()
    number = resolve_district(settings, district).number
    with _client() as client:
        _refresh_table(client, settings, number, clean=clean)


def served_districts() -> list[int]:
    """Every configured (enabled) district's number."""
    return [d.number for d in configured_districts(get_settings())]


def refresh_tables(districts: list[int] | None = None) -> int:
    """Rewrite the View History table of each district (default: every configured one),
    so the requests the command line ran since the last rewrite show in the UI. Returns
    how many tables were rewritten; a district whose rewrite fails is logged and skipped."""
    settings = get_settings()
    numbers = districts or served_districts()
    done = 0
    with _client() as client:
        for number in numbers:
            try:
                _refresh_table(client, settings, number)
                done += 1
            except (StoreUnavailable, SQLAlchemyError) as exc:
                log.warning(
                    "The View History table of district %s was not rewritten: %s",
                    number,
                    first_line(exc),
                )
    return done


# ---------------------------------------------------------------- reading


def _client():
    return api_client(StoreUnavailable, "the Sync History")


def _sync_runs(client: SyncPrefectClient) -> Iterator[list[FlowRun]]:
    """Pages of selective-sync runs, newest requested first."""
    seen: set[UUID] = set()
    offset = 0
    while True:
        page = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=PAGE,
            offset=offset,
        )
        # A run created meanwhile shifts the pages by one: never yield a run twice.
        fresh = [r for r in page if r.id not in seen]
        seen.update(r.id for r in fresh)
        if fresh:
            yield fresh
        if len(page) < PAGE:
            return
        offset += PAGE


def _prefect_entries(
    client: SyncPrefectClient, settings: Settings, number: int, limit: int | None
) -> list[HistoryEntry]:
    """The district's entries as the Prefect API has them (runs and their artifacts)."""
    found: list[HistoryEntry] = []
    for page in _sync_runs(client):
        # A run given another district is that district's (the flow runs it there): its
        # artifacts are not read. A run given none is read, since its artifacts say which.
        candidates = [r for r in page if _district_parameter(r) in (number, None)]
        step = max(limit - len(found), 1) if limit is not None else len(candidates) or 1
        for start in range(0, len(candidates), step):
            chunk = candidates[start : start + step]
            entries = _entries(client, settings, chunk, with_outcomes=False)
            found.extend(e for e in entries if e.district == number)
            if limit is not None and len(found) >= limit:
                return found[:limit]
    return found[:limit] if limit is not None else found


def _district_parameter(flow_run: FlowRun) -> int | None:
    """The district a run was given; None when it was left to the default (None, or the
    form's 0 for "the district this deployment serves")."""
    value = (flow_run.parameters or {}).get("district")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value or None


def _run_district(settings: Settings, flow_run: FlowRun) -> int:
    """The district a run was given, or the configured one it then ran in."""
    return _district_parameter(flow_run) or resolve_district(settings).number


def _listed(settings: Settings, may_read: Callable[[int], bool]) -> Callable[[FlowRun], bool]:
    """Whether a run may be listed among several matches: its district is read by the user."""
    return lambda flow_run: may_read(_run_district(settings, flow_run))


def _find_run(
    client: SyncPrefectClient, run: str, *, list_matches: Callable[[FlowRun], bool]
) -> FlowRun:
    """The selective-sync run named by a run id, an id prefix or a run-name prefix.

    When several match, the error lists those ``list_matches`` allows (a user without R on
    a district must not read its history through it)."""
    text = (run or "").strip()
    if not text:
        raise BadInput("no run given: use a run id (or its first characters) from history list")
    try:
        run_id = UUID(text)
    except ValueError:
        return _find_by_prefix(client, text, list_matches)
    try:
        flow_run = client.read_flow_run(run_id)
    except ObjectNotFound:
        raise BadInput(f"no Sync History entry has run id {text}") from None
    flow = client.read_flow(flow_run.flow_id)
    if flow.name != FLOW_NAME:
        raise BadInput(
            f"run {text} is a run of the {flow.name!r} flow, not a selective sync: "
            "it is not a Sync History entry"
        )
    return flow_run


def _find_by_prefix(
    client: SyncPrefectClient, text: str, list_matches: Callable[[FlowRun], bool]
) -> FlowRun:
    lowered = text.lower()
    by_id = len(lowered) >= MIN_ID_PREFIX and all(c in "0123456789abcdef-" for c in lowered)
    matches = [
        r
        for page in _sync_runs(client)
        for r in page
        if (by_id and str(r.id).startswith(lowered)) or r.name.startswith(text)
    ]
    if not matches:
        raise BadInput(
            f"no Sync History entry matches {text!r}: use a run id (at least "
            f"{MIN_ID_PREFIX} characters) or a run name from history list"
        )
    listed = [r for r in matches if list_matches(r)]
    if len(matches) > 1 and not listed:
        raise BadInput(
            f"{text!r} matches {len(matches)} Sync History entries; give more of the run id"
        )
    if len(matches) > 1:
        shown = ", ".join(f"{str(r.id)[:8]} ({r.name})" for r in listed[:5])
        rest = len(matches) - len(listed[:5])
        more = f" and {rest} more" if rest else ""
        raise BadInput(
            f"{text!r} matches {len(matches)} Sync History entries: {shown}{more}; "
            "give more of the run id"
        )
    return matches[0]


def _entries(
    client: SyncPrefectClient, settings: Settings, runs: list[FlowRun], with_outcomes: bool
) -> list[HistoryEntry]:
    types = None if with_outcomes else SUMMARY_TYPES
    by_run: dict[UUID, list[Artifact]] = defaultdict(list)
    for artifact in _artifacts(client, [r.id for r in runs], types):
        by_run[artifact.flow_run_id].append(artifact)
    default = resolve_district(settings).number
    names = {d.number: d.name for d in configured_districts(settings)}
    entries = []
    for flow_run in runs:
        artifacts = by_run.get(flow_run.id, [])
        entry = build_entry(_facts(flow_run), _contents(artifacts), default_district=default)
        entry.district_name = entry.district_name or names.get(entry.district)
        entries.append(entry)
    return entries


def _artifacts(
    client: SyncPrefectClient, run_ids: list[UUID], types: list[str] | None = None
) -> list[Artifact]:
    """Every artifact of these runs (only of ``types`` when given), oldest first."""
    if not run_ids:
        return []
    found: dict[UUID, Artifact] = {}
    for start in range(0, len(run_ids), PAGE):
        artifact_filter = ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=run_ids[start : start + PAGE]),
            type=ArtifactFilterType(any_=types) if types else None,
        )
        found.update((a.id, a) for a in read_all_artifacts(client, artifact_filter))
    return sorted(found.values(), key=lambda a: a.created)


def _facts(flow_run: FlowRun) -> RunFacts:
    state = flow_run.state
    return RunFacts(
        id=str(flow_run.id),
        name=flow_run.name,
        state_type=flow_run.state_type.value if flow_run.state_type else None,
        state_message=state.message if state else None,
        parameters=dict(flow_run.parameters or {}),
        # The expected start is when the request was made (a UI run's click, a direct
        # call's start); it is also the order the API pages runs in.
        requested_at=flow_run.expected_start_time or flow_run.created,
        ended_at=flow_run.end_time,
    )


def _contents(artifacts: list[Artifact]) -> RunArtifacts:
    """The history artifacts' contents; for a kind published twice, the latest wins."""
    district = summary = rows = progress = None
    for artifact in artifacts:  # oldest first
        parsed = parse_history_key(artifact.key)
        if parsed is None:
            continue
        kind, district = parsed
        if kind in SUMMARY_KINDS and artifact.type == "markdown":
            summary = parse_summary(str(artifact.data or ""))
        elif kind == "outcomes" and artifact.type == "table":
            rows = _table_rows(artifact.data)
        elif kind == "progress" and artifact.type == "progress":
            progress = float(artifact.data) if artifact.data is not None else None
    return RunArtifacts(district=district, summary=summary, rows=rows, progress=progress)


def _table_rows(data: Any) -> list[dict[str, Any]]:
    # A table artifact's data is the JSON text of its rows (prefect.artifacts.TableArtifact).
    rows = json.loads(data) if isinstance(data, str) else data
    if not isinstance(rows, list):
        raise StoreUnavailable("a sync-outcomes artifact does not hold a list of rows")
    return rows


# ---------------------------------------------------------------- deleting


def _delete(client: SyncPrefectClient, run_id: UUID) -> None:
    _delete_run(client, run_id)
    # Its report files too, so the entry's download links stop working with it.
    ReportStorage.from_settings().delete_run(str(run_id))


def _delete_run(client: SyncPrefectClient, run_id: UUID) -> None:
    # Artifacts first, then the run: see the module docstring.
    # Something deleted concurrently is gone either way: not an error.
    for artifact in _artifacts(client, [run_id]):
        with suppress(ObjectNotFound):
            client.delete_artifact(artifact.id)
    with suppress(ObjectNotFound):
        client.delete_flow_run(run_id)


# ---------------------------------------------------------------- the View History table


def _refresh_table(
    client: SyncPrefectClient, settings: Settings, number: int, clean: bool = True
) -> None:
    """Clean up after runs deleted outside the history (``clean``: deletes, clears and
    rebuilds; not the runs' own rewrites, which would read every run's artifacts each
    time), then make the table current.

    Two runs that end at once both write; the later write may hold the older view (each
    renders what it read). So every writer reads again after writing and writes again
    while the stored table differs from a fresh one; the last writer to read leaves the
    current table. Bounded: a district this busy is rewritten by its next run anyway.
    """
    if clean:
        _delete_orphans(client, settings, number)
    for _ in range(TABLE_WRITES):
        markdown = _table_markdown(client, settings, number)
        latest = _latest_table(client, number)
        if latest is not None and latest.data == markdown:
            return
        _write_table(client, settings, number, markdown)


def _table_markdown(client: SyncPrefectClient, settings: Settings, number: int) -> str:
    with ledger_history(settings) as history:
        settle(history, unfinished_requests(history.engine, number))
        entries = history.entries(number, limit=TABLE_ROWS + 1)
    shown = entries[:TABLE_ROWS]
    name = next((e.district_name for e in shown if e.district_name), None) or next(
        (d.name for d in configured_districts(settings) if d.number == number), None
    )
    links = _row_links(settings, shown)
    return history_table_markdown(number, name, shown, links, more=len(entries) > TABLE_ROWS)


def _row_links(settings: Settings, entries: list[HistoryEntry]) -> dict[str, RowLinks]:
    """Each row's run page and, once the request has finished, its reports (made when a
    link is first opened, from the ledger: selective_sync.reports.on_demand)."""
    ui = ui_url()
    signer = _signer(settings) if any(e.finished for e in entries) else None
    links = {}
    for entry in entries:
        reports: dict[str, str | None] = {}
        for fmt in SYNC_FORMATS if entry.finished and signer else ():
            ref = StoredReport.sync(entry.run_id, fmt)
            # Issued to the requester, as the run's own report links are.
            reports[fmt] = signer.link(
                settings.reports_base_url, ref, entry.requested_by or "unknown"
            )
        links[entry.run_id] = RowLinks(
            # A request the command line ran itself has no run page to open.
            run=run_url(entry.run_id, ui) if entry.flow_run else None,
            pdf=reports.get("pdf"),
            docx=reports.get("docx"),
        )
    return links


def _signer(settings: Settings) -> LinkSigner | None:
    """The report links' signer; None (rows without report links) when its key cannot be
    read or made: the table shows the history all the same."""
    try:
        return LinkSigner.from_settings(settings)
    except SelectiveSyncError as exc:
        log.warning("The View History table links no reports: %s", exc)
        return None


def ui_url() -> str:
    """The Prefect UI's address: PREFECT_UI_URL, else the API URL without ``/api``."""
    from prefect.settings import get_current_settings

    current = get_current_settings()
    url = current.ui_url or current.api.url
    if not url:
        return DEFAULT_UI_URL
    return str(url).rstrip("/").removesuffix("/api")


def run_url(run_id: str, ui: str | None = None) -> str:
    """The run's page in the Prefect UI (the same path in the V1 and the V2 UI)."""
    return f"{ui or ui_url()}/runs/flow-run/{run_id}"


def _latest_table(client: SyncPrefectClient, number: int) -> Artifact | None:
    versions = list(
        read_all_artifacts(client, ArtifactFilter(key=ArtifactFilterKey(any_=[table_key(number)])))
    )
    # Newest id first is not newest created first: pick by creation time.
    return max(versions, key=lambda a: a.created, default=None)


def _write_table(client: SyncPrefectClient, settings: Settings, number: int, markdown: str):
    name = next((d.name for d in configured_districts(settings) if d.number == number), None)
    # No flow run: the table belongs to the district, so deleting a run never deletes it.
    written = client.create_artifact(
        ArtifactCreate(
            key=table_key(number),
            type="markdown",
            data=markdown,
            description=table_description(number, name),
        )
    )
    # Keep only the newest version, so the key's page in the UI is the table alone. A
    # concurrent writer's newer version is kept; older ones go.
    for artifact in read_all_artifacts(
        client, ArtifactFilter(key=ArtifactFilterKey(any_=[table_key(number)]))
    ):
        if artifact.id != written.id and artifact.created <= written.created:
            with suppress(ObjectNotFound):
                client.delete_artifact(artifact.id)


def _delete_orphans(client: SyncPrefectClient, settings: Settings, number: int) -> None:
    """Delete what runs deleted outside the history left behind (the UI's own Delete
    removes the run only): their artifacts and their report files."""
    keys = [f"sync-{kind}-{number}" for kind in ("request", "history", "progress")]
    keys += [f"sync-report-{fmt}-{number}" for fmt in SYNC_FORMATS]
    small = read_all_artifacts(
        client,
        ArtifactFilter(
            key=ArtifactFilterKey(any_=keys),
            type=ArtifactFilterType(any_=["markdown", "progress", "link"]),
        ),
    )
    run_ids = {a.flow_run_id for a in small if a.flow_run_id is not None}
    storage = ReportStorage.from_settings(settings)
    files = _report_files(storage)
    gone = _missing_runs(client, run_ids | set(files))
    # A request the ledger still holds keeps its report files: its entry is still listed.
    with ledger_history(settings) as history:
        gone = {r for r in gone if read_request(history.engine, str(r)) is None}
    for run_id in gone:
        if run_id in run_ids:
            for artifact in _artifacts(client, [run_id]):
                with suppress(ObjectNotFound):
                    client.delete_artifact(artifact.id)
        if run_id in files:
            storage.delete_run(str(run_id))


def _report_files(storage: ReportStorage) -> set[UUID]:
    """The runs that have sync report files stored."""
    found = set()
    for path in storage.root.glob("sync/*"):
        with suppress(ValueError):
            found.add(UUID(path.stem))
    return found


def _missing_runs(client: SyncPrefectClient, run_ids: set[UUID]) -> set[UUID]:
    wanted = list(run_ids)
    existing: set[UUID] = set()
    for start in range(0, len(wanted), PAGE):
        chunk = wanted[start : start + PAGE]
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=PAGE
        )
        existing.update(r.id for r in runs)
    return run_ids - existing
