"""The View History table in the Prefect UI: equal to ``history list`` and to the stored
reports after concurrent syncs, a refusal, a delete, a run deleted with Prefect's own
Delete, and a clear, all on a real Prefect API."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
from helpers import logs_of

from selective_sync.errors import RightsError
from selective_sync.rights import ALL_DISTRICTS, RightsStore

pytestmark = pytest.mark.usefixtures("prefect_api")

ABSENT = 999_999_999
RUN_LINK = re.compile(r"\]\([^)]*/runs/flow-run/(?P<id>[0-9a-f-]{36})\)")
REPORT_LINK = re.compile(r"\[(?P<fmt>PDF|DOCX)\]\((?P<url>[^)]+)\)")


def run_sync(object_name, ids, user, **kwargs):
    from flows.sync_request import selective_sync

    state = selective_sync(
        object=object_name, ids=ids, requested_by=user, return_state=True, **kwargs
    )
    return str(state.state_details.flow_run_id), state


def table_rows(district: int = 275) -> list[dict]:
    """The latest sync-history table, parsed back: one dict per row, top to bottom."""
    from prefect.artifacts import Artifact

    artifact = Artifact.get(f"sync-history-{district}")
    assert artifact is not None and artifact.type == "markdown"
    assert artifact.flow_run_id is None  # the district's, not a run's
    rows = []
    lines = artifact.data.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|---")) + 1
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        if line.startswith("| (no requests)"):
            continue
        match = RUN_LINK.search(line)
        cells = line[2:-2].split(" | ")
        rows.append(
            {
                # None for a request with no run page (marked "(CLI)" or "(nightly)").
                "run_id": match["id"] if match else None,
                "run": cells[6],
                "user": cells[1],
                "status": cells[2],
                "object": cells[3],
                "keys": cells[4],
                "records": cells[5],
                "reports": {m["fmt"].lower(): m["url"] for m in REPORT_LINK.finditer(cells[7])},
            }
        )
    return rows


def open_reports(*run_ids: str) -> None:
    """What opening each run's report links does: the reports are made and kept."""
    from selective_sync.reports.on_demand import SyncReports
    from selective_sync.reports.storage import SYNC_FORMATS, StoredReport

    reports = SyncReports.from_settings()
    for run_id in run_ids:
        for fmt in SYNC_FORMATS:
            assert reports.path(StoredReport.sync(run_id, fmt)).is_file()


def listed(user: str, district: int = 275) -> list:
    from flows.history_store import list_entries
    from selective_sync.history.table import TABLE_ROWS

    return list_entries(district, limit=TABLE_ROWS, user=user)


def table_versions(district: int = 275) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"sync-history-{district}"]))
        )
    return len(found)


def assert_table_is_history(user: str, reports_dir) -> list[dict]:
    """Table == history list (order, status, records, who, what) == the stored reports."""
    from selective_sync.reports.storage import LinkSigner

    rows, entries = table_rows(), listed(user)
    assert [r["run_id"] for r in rows] == [e.run_id if e.flow_run else None for e in entries]
    for row, entry in zip(rows, entries, strict=True):
        if not entry.flow_run:
            mark = "nightly" if entry.origin == "nightly" else "CLI"
            assert row["run"] == f"{entry.run_name} ({mark})"
            row["run_id"] = entry.run_id
    for row, entry in zip(rows, entries, strict=True):
        assert (row["status"], row["records"], row["user"], row["object"]) == (
            entry.status,
            entry.records,
            entry.requested_by,
            entry.object,
        )
        n = len(entry.keys)  # a request refused for its IDs (another test's) has none
        assert row["keys"].endswith(f"({n:,} key{'s' * (n != 1)})" if n else "(none)")
        # A finished request links both reports (made when first opened); every report
        # made so far is linked.
        stored = {p.suffix[1:] for p in (reports_dir / "sync").glob(f"{entry.run_id}.*")}
        assert set(row["reports"]) == ({"pdf", "docx"} if entry.finished else set()), row
        assert stored <= set(row["reports"]), (row, stored)
        for fmt, url in row["reports"].items():
            parts = urlsplit(url)
            assert parts.path == f"/reports/{entry.run_id}.{fmt}"
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            assert LinkSigner.from_settings().verify(parts.path, query["user"], query["sig"])
    assert table_versions() == 1  # the key's page in the UI is the table alone
    return rows


def test_table_stays_equal_to_history_list_through_a_mixed_sequence(demo, admin):
    from prefect.client.orchestration import get_client

    from flows.history_store import clear, delete_entry, refresh_table

    reports = demo.dir / "reports"
    mismatched = demo.manifest["PersonIdentity"]["mismatched"]
    with RightsStore.from_settings() as store:
        store.grant(admin, "reader", "R", district=ALL_DISTRICTS)

    # Two syncs at once: both end (and write the table) at about the same time.
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(run_sync, "PersonIdentity", [mismatched[0], ABSENT], admin),
            pool.submit(run_sync, "PersonIdentity", mismatched[1:4], admin),
        ]
        (two, two_state), (three, _) = (f.result() for f in futures)
    rows = assert_table_is_history(admin, reports)
    by_id = {r["run_id"]: r for r in rows}
    assert (by_id[two]["status"], by_id[two]["records"]) == ("Complete", "1/2")
    assert by_id[three]["records"] == "3/3"
    # The run's state says what happened, in the runs list (name) and run page (message).
    assert two_state.name == "Complete · Records 1/2"
    assert two_state.message == "Complete · Records 1/2 · 1 synced, 1 not found"
    assert two_state.result().succeeded == 1  # callers still get the SyncResult

    # A refused request wrote nothing, not even to the ledger: it is no entry, in the
    # table as in history list; its run says why it was refused.
    refused, refused_state = run_sync("PersonIdentity", mismatched[:1], "reader")
    assert isinstance(refused_state.result(raise_on_failure=False), RightsError)
    assert "Traceback" not in refused_state.message and "lacks the W right" in refused_state.message
    rows = assert_table_is_history(admin, reports)
    assert refused not in {r["run_id"] for r in rows}

    # A delete through the history removes the row.
    delete_entry(three, user=admin)
    rows = assert_table_is_history(admin, reports)
    assert three not in {r["run_id"] for r in rows}

    # Prefect's own Delete removes the run, not the request: the ledger keeps the entry
    # (with its reports) until someone with D deletes it through the history.
    open_reports(two)
    with get_client(sync_client=True) as client:
        client.delete_flow_run(UUID(two))
    after, _ = run_sync("PersonIdentity", mismatched[4:5], admin)
    rows = assert_table_is_history(admin, reports)
    assert rows[0]["run_id"] == after
    assert {r["run_id"]: r["records"] for r in rows}[two] == "1/2"
    assert list((reports / "sync").glob(f"{two}.*"))

    # A clear empties this district's table (runs of other tests in this API included),
    # and takes what Prefect's Delete left behind with it.
    clear(user=admin)
    assert assert_table_is_history(admin, reports) == [] and listed(admin) == []
    assert list((reports / "sync").glob(f"{two}.*")) == []
    assert _artifacts_of(two) == []

    # Rewriting a current table writes nothing new.
    refresh_table(275)
    assert table_versions() == 1


def test_a_run_deleted_in_the_ui_is_cleaned_by_the_next_clear(demo, admin):
    from prefect.client.orchestration import get_client

    from flows.history_store import clear

    run_id, _ = run_sync("PersonIdentity", demo.manifest["PersonIdentity"]["mismatched"][:1], admin)
    assert _artifacts_of(run_id)
    open_reports(run_id)
    assert list((demo.dir / "reports" / "sync").glob(f"{run_id}.*"))
    with get_client(sync_client=True) as client:
        client.delete_flow_run(UUID(run_id))
    clear(user=admin)
    assert _artifacts_of(run_id) == []
    assert list((demo.dir / "reports" / "sync").glob(f"{run_id}.*")) == []
    assert run_id not in {r["run_id"] for r in table_rows()}


def test_table_cells_are_escaped_and_keys_shortened():
    from selective_sync.history.entry import HistoryEntry
    from selective_sync.history.table import RowLinks, history_table_markdown, keys_cell

    assert keys_cell([1]) == "1 (1 key)"
    assert keys_cell(list(range(1, 1201))) == "1, 2, 3 … (1,200 keys)"
    entry = HistoryEntry(
        run_id="0" * 8 + "-0000-0000-0000-" + "0" * 12,
        run_name="x",
        requested_at=datetime(2026, 11, 28, 20, 15, tzinfo=UTC),
        requested_by="a|b [x](javascript:y) *c*",
        status="Complete",
        completed_at=None,
        object="PersonIdentity",
        keys=[1, 2],
        records_succeeded=2,
        records_total=2,
        district=275,
        district_name="MAPLE VALLEY",
        check_dependencies=False,
        dry_run=False,
    )
    text = history_table_markdown(275, "MAPLE VALLEY", [entry], {entry.run_id: RowLinks("u")})
    row = text.splitlines()[-1]
    assert "a\\|b \\[x\\](javascript:y) \\*c\\*" in row
    assert row.count(" | ") == 7  # the user's pipe did not add a cell
    assert "11/28/2026 08:15 PM UTC" in row and "| 2/2 |" in row


def _artifacts_of(run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )


@pytest.mark.parametrize("case", ["refused", "bad ids"])
def test_a_refusal_ends_the_run_with_one_plain_line(demo, admin, case):
    from selective_sync.errors import BadInput

    with RightsStore.from_settings() as store:
        store.grant(admin, "reader", "R", district=ALL_DISTRICTS)
    user, ids, error, words = {
        "refused": ("reader", [1], RightsError, "lacks the W right"),
        "bad ids": (admin, "12, x7, 13", BadInput, "x7"),
    }[case]
    run_id, state = run_sync("PersonIdentity", ids, user)
    assert state.is_failed() and isinstance(state.result(raise_on_failure=False), error)
    assert words in state.message and "\n" not in state.message
    assert "Traceback" not in state.message and "Flow run encountered" not in state.message
    logs = logs_of(run_id)
    assert not [m for m in logs if "Traceback" in m], logs
    assert sum(words in m for m in logs) <= 2, logs  # our error line and Prefect's final state
    # Refused before it started: nothing written, not even a history entry.
    assert run_id not in {r["run_id"] for r in table_rows()}


def test_progress_moves_while_the_fan_out_runs(demo, admin, monkeypatch):
    from selective_sync.sync import progress

    seen: list[float] = []
    progress.add_listener(seen.append)
    try:
        keys = demo.manifest["PersonIdentity"]["mismatched"][:6] + list(range(10**8, 10**8 + 20))
        _, state = run_sync("PersonIdentity", keys, admin)
    finally:
        progress.remove_listener(seen.append)
    assert state.is_completed()
    assert seen[-1] == 100.0 and seen == sorted(seen)
    assert any(0 < p < 100 for p in seen), seen  # it moved before the fan-out ended


def _table_writes_since(since: datetime, district: int = 275) -> int:
    """How many times the district's table was written since ``since`` (Prefect's events)."""
    from prefect.client.orchestration import get_client

    body = {
        "filter": {
            "occurred": {"since": since.isoformat()},
            "event": {"name": ["prefect.artifact.created"]},
            "resource": {"labels": {"prefect.resource.name": [f"sync-history-{district}"]}},
        },
        "limit": 50,
    }
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/events/filter", json=body).json()["events"]
    return len(found)


def _settled_table_writes(since: datetime, expected: int) -> int:
    """The table's writes since ``since`` once ``expected`` have reached the server's event
    store (a moment after each write; 20 s at most), counted again 2 s later, so a write
    too many is seen too."""
    import time

    deadline = time.monotonic() + 20
    while _table_writes_since(since) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    return _table_writes_since(since)


def test_the_nightly_writes_the_table_once_after_its_syncs(demo, admin):
    """The district's night rewrites the table once for all its syncs (each sync of a
    person writes it at its start and at its end); the table is then the history, the
    nightly's syncs Complete and marked as the nightly's (they have no run page)."""
    from flows.reconcile import reconcile_districts
    from selective_sync.reconcile import REQUESTER

    with RightsStore.from_settings() as store:
        store.grant(admin, REQUESTER, "W", district=ALL_DISTRICTS)
    since = datetime.now(UTC)
    (district,) = reconcile_districts(
        districts=[275], objects=["PersonIdentity", "Enrollment"], max_keys=3
    )
    runs = [o.sync_run_id for o in district.objects]
    assert len(runs) == 2 and all(runs)
    rows = assert_table_is_history(admin, demo.dir / "reports")
    by_id = {r["run_id"]: r for r in rows}
    assert all(by_id[run]["status"] == "Complete" for run in runs), rows
    assert {by_id[run]["user"] for run in runs} == {REQUESTER}
    assert all(by_id[run]["run"].endswith(" (nightly)") for run in runs), rows
    assert _settled_table_writes(since, 1) == 1

    # A person's sync writes it itself: once when it ends, and (only a request still running
    # after IN_PROGRESS_AFTER_S, test_history's In Progress test) once while it runs.
    since = datetime.now(UTC)
    run_sync("PersonIdentity", demo.manifest["PersonIdentity"]["mismatched"][:1], admin)
    assert _settled_table_writes(since, 1) == 1
