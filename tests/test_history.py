"""The Sync History: real selective-sync runs in a real Prefect API, read back as entries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from uuid import UUID

import pytest

from selective_sync.errors import BadInput
from selective_sync.models import Outcome
from selective_sync.rights import ALL_DISTRICTS, RightsError, RightsStore

pytestmark = pytest.mark.usefixtures("prefect_api")

ABSENT = 999_999_999
OTHER = 312
CLI = [sys.executable, "-m", "flows.cli"]


# ---------------------------------------------------------------- helpers


def run_sync(object_name, ids, user, **kwargs):
    """Run the flow; returns (flow run id, SyncResult or the exception it raised)."""
    from flows.sync_request import selective_sync

    state = selective_sync(
        object=object_name, ids=ids, requested_by=user, return_state=True, **kwargs
    )
    return str(state.state_details.flow_run_id), state.result(raise_on_failure=False)


def artifacts_of(run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )


def run_exists(run_id: str) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_flow_run(UUID(run_id))
        except ObjectNotFound:
            return False
    return True


def open_reports(*run_ids: str) -> None:
    """What opening each run's report links does: the reports are made and kept."""
    from selective_sync.reports.on_demand import SyncReports
    from selective_sync.reports.storage import SYNC_FORMATS, StoredReport

    reports = SyncReports.from_settings()
    for run_id in run_ids:
        for fmt in SYNC_FORMATS:
            assert reports.path(StoredReport.sync(run_id, fmt)).is_file()


def entry_ids(user: str, district: int | None = None) -> list[str]:
    from flows.history_store import list_entries

    return [e.run_id for e in list_entries(district, limit=10_000, user=user)]


def grant(admin: str, user: str, rights: str) -> None:
    with RightsStore.from_settings() as store:
        store.grant(admin, user, rights, district=ALL_DISTRICTS)


@pytest.fixture
def three_keys(demo):
    """Two keys the sync fixes and one the district does not hold: Records 2/3."""
    mismatched = demo.manifest["PersonIdentity"]["mismatched"]
    return [mismatched[0], mismatched[1], ABSENT]


@pytest.fixture
def other_district(demo, monkeypatch):
    """A second configured district (312) whose database is a copy of the demo district's."""
    shutil.copy(demo.dir / "district.db", demo.dir / "district-312.db")
    config = [
        {"number": OTHER, "name": "OAK RIDGE", "url": f"sqlite:///{demo.dir}/district-312.db"}
    ]
    monkeypatch.setenv("SELECTIVE_SYNC_DISTRICTS", json.dumps(config))
    return OTHER


# ---------------------------------------------------------------- content, no API


def test_summary_and_outcomes_round_trip_hostile_text():
    from datetime import UTC, datetime

    from selective_sync.history.codec import (
        history_markdown,
        outcome_rows,
        outcomes_from_rows,
        parse_summary,
    )
    from selective_sync.history.entry import status_of
    from selective_sync.models import KeyOutcome, SyncResult

    user = "a|b *c* \\ [x](y) <b>_d_ & `e`"
    result = SyncResult(
        object="Enrollment",
        district_number=275,
        district_name="O'NEIL | EAST",
        requested_by=user,
        requested_at=datetime(2026, 11, 28, 20, 15, tzinfo=UTC),
        completed_at=None,
        check_dependencies=True,
        dry_run=False,
        keys=[
            KeyOutcome(1, Outcome.SYNCED, parents_synced=["PersonIdentity 7", "PersonIdentity 8"]),
            KeyOutcome(2, Outcome.FAILED, reason="code | 9\nunmapped", attempts=4),
        ],
    )
    markdown = history_markdown(result)
    assert "*c*" not in markdown and "<b>" not in markdown  # no markup in the UI
    rows = parse_summary(markdown)
    assert rows["Requested by"] == user
    assert rows["District"] == "275 O'NEIL | EAST"
    assert (rows["Records"], rows["Completed"], rows["Status"]) == ("1/2", "", "Complete")
    back = outcomes_from_rows(json.loads(json.dumps(outcome_rows(result))))
    assert [(k.key, k.outcome, k.attempts, k.parents_synced) for k in back] == [
        (k.key, k.outcome, k.attempts, k.parents_synced) for k in result.keys
    ]
    assert back[1].reason == "code | 9\nunmapped" and back[0].reason is None
    assert [status_of(s) for s in ("COMPLETED", "StateType.CRASHED", "RUNNING", "CANCELLED")] == [
        "Complete",
        "Crashed",
        "In Progress",
        "Cancelled",
    ]


# ---------------------------------------------------------------- artifacts and entries


def test_run_publishes_history_artifacts(demo, admin, three_keys):
    run_id, result = run_sync("PersonIdentity", three_keys, admin, check_dependencies=True)
    assert (result.succeeded, result.total) == (2, 3)
    by_key = {a.key: a for a in artifacts_of(run_id)}
    assert set(by_key) == {
        "sync-request-275",
        "sync-outcomes-275",
        "sync-progress-275",
        "sync-report-pdf-275",
        "sync-report-docx-275",
    }

    markdown = by_key["sync-request-275"].data
    for row in (
        "| Status | Complete |",
        "| Requested | ",
        "| Completed | ",
        f"| Keys | {three_keys[0]}, {three_keys[1]}, {ABSENT} |",
        "| Object | PersonIdentity |",
        "| Records | 2/3 |",
        f"| Requested by | {admin} |",
        "| District | 275 MAPLE VALLEY |",
        "| Check dependencies | yes |",
        "| Dry run | no |",
    ):
        assert row in markdown, (row, markdown)

    rows = json.loads(by_key["sync-outcomes-275"].data)
    assert [r["key"] for r in rows] == three_keys
    assert [r["outcome"] for r in rows] == ["synced", "synced", "not_found"]
    assert all(r["attempts"] >= 1 for r in rows)
    assert by_key["sync-progress-275"].data == 100


def test_list_is_newest_first_and_show_has_every_key(demo, admin, three_keys):
    from flows.history_store import get_entry, list_entries

    first, _ = run_sync("PersonIdentity", three_keys, admin)
    second, _ = run_sync(
        "Enrollment", demo.manifest["Enrollment"]["mismatched"][:1], admin, dry_run=True
    )
    newest = list_entries(limit=2, user=admin)
    assert [e.run_id for e in newest] == [second, first]
    assert newest[1].records == "2/3" and newest[1].status == "Complete"
    assert newest[1].requested_at <= newest[0].requested_at
    assert newest[0].dry_run and newest[0].object == "Enrollment"
    assert newest[1].outcomes is None  # a listing never reads the outcome tables

    entry = get_entry(first[:8], user=admin)
    assert entry.run_id == first
    assert entry.keys == three_keys
    assert [k.outcome for k in entry.outcomes] == [
        Outcome.SYNCED,
        Outcome.SYNCED,
        Outcome.NOT_FOUND,
    ]
    assert (entry.requested_by, entry.district, entry.district_name) == (admin, 275, "MAPLE VALLEY")
    assert entry.completed_at and entry.completed_at >= entry.requested_at
    assert entry.to_sync_result().succeeded == 2


def test_ten_thousand_keys_round_trip(demo, admin, monkeypatch):
    from flows.history_store import get_entry

    keys = demo.manifest["PersonIdentity"]["mismatched"] + list(range(10**8, 10**8 + 10_000))
    keys = list(dict.fromkeys(keys))[:10_000]
    run_id, result = run_sync("PersonIdentity", keys, admin, dry_run=True)
    assert result.total == 10_000
    entry = get_entry(run_id, user=admin)
    assert entry.keys == keys
    assert len(entry.outcomes) == 10_000
    assert entry.records == f"{result.succeeded}/10000"


def test_refused_run_is_a_failed_entry(demo, admin, three_keys):
    from flows.history_store import get_entry

    grant(admin, "reader", "R")
    run_id, error = run_sync("PersonIdentity", three_keys, "reader")
    assert isinstance(error, RightsError)
    entry = get_entry(run_id, user="reader")
    assert entry.status == "Failed" and entry.outcomes is None
    assert "lacks the W right" in entry.failure and "Flow run" not in entry.failure
    # What was asked comes from the run's parameters even though nothing was published.
    assert (entry.keys, entry.records, entry.requested_by) == (three_keys, "-/3", "reader")


# ---------------------------------------------------------------- delete and clear


def test_delete_removes_exactly_one_entry_and_its_artifacts(demo, admin, three_keys):
    from prefect.artifacts import Artifact

    from flows.history_store import delete_entry

    older, _ = run_sync("PersonIdentity", three_keys, admin)
    newer, _ = run_sync("PersonIdentity", three_keys[:1], admin)
    reports = demo.dir / "reports" / "sync"
    open_reports(older, newer)
    assert {p.name for p in reports.glob(f"{newer}.*")} == {f"{newer}.pdf", f"{newer}.docx"}
    before = entry_ids(admin)
    deleted = delete_entry(newer[:8], user=admin)
    assert deleted.run_id == newer
    after = entry_ids(admin)
    assert after == [r for r in before if r != newer]
    assert artifacts_of(newer) == [] and not run_exists(newer)
    assert list(reports.glob(f"{newer}.*")) == []
    assert len(list(reports.glob(f"{older}.*"))) == 2
    assert {a.key for a in artifacts_of(older)} >= {"sync-request-275", "sync-outcomes-275"}
    # The UI's View History table lists the remaining run, not the deleted one.
    table = Artifact.get("sync-history-275").data
    assert f"/runs/flow-run/{older})" in table and newer not in table


def test_clear_removes_this_districts_entries_only(demo, admin, three_keys, other_district):
    from flows.history_maintenance import clear_history
    from flows.history_store import clear

    elsewhere, _ = run_sync("PersonIdentity", three_keys, admin, district=other_district)
    run_sync("PersonIdentity", three_keys, admin)
    run_sync("PersonIdentity", three_keys[:1], admin)
    other_before = entry_ids(admin, other_district)
    assert elsewhere in other_before and len(entry_ids(admin)) >= 2

    result = clear(user=admin)
    assert result.district == 275 and len(result.deleted) >= 2 and not result.skipped
    assert entry_ids(admin) == []
    assert entry_ids(admin, other_district) == other_before
    assert {a.key for a in artifacts_of(elsewhere)} == {
        "sync-request-312",
        "sync-outcomes-312",
        "sync-progress-312",
        "sync-report-pdf-312",
        "sync-report-docx-312",
    }

    # The flow the UI runs does the same for the other district.
    assert clear_history(admin, district=other_district) == len(other_before)
    assert entry_ids(admin, other_district) == [] and artifacts_of(elsewhere) == []


def test_every_refusal_changes_nothing(demo, admin, three_keys, monkeypatch):
    from flows import api_client, history_maintenance, history_store

    run_id, _ = run_sync("PersonIdentity", three_keys, admin)
    grant(admin, "reader", "R")
    grant(admin, "writer", "W")
    grant(admin, "deleter", "D")  # D does not imply R: it may delete, not read
    before = entry_ids(admin)
    artifacts_before = len(artifacts_of(run_id))

    def no_api(*_args, **_kwargs):
        raise AssertionError("the Prefect API was used before the rights check")

    with monkeypatch.context() as patch:
        patch.setattr(api_client, "get_client", no_api)
        refusals = [
            (lambda u: history_store.list_entries(user=u), ["nobody", "deleter"]),
            (lambda u: history_store.get_entry(run_id, user=u), ["nobody", "deleter"]),
            (lambda u: history_store.delete_entry(run_id, user=u), ["nobody", "reader", "writer"]),
            (lambda u: history_store.clear(user=u), ["nobody", "reader", "writer"]),
        ]
        for action, users in refusals:
            for user in users:
                with pytest.raises(RightsError, match=f"user '{user}' lacks the"):
                    action(user)

    # The UI's flows refuse the same way (one user each: the check is the same call).
    refused = history_maintenance.delete_history_entry(run_id, "nobody", return_state=True)
    assert refused.is_failed() and "lacks the D right" in refused.message
    with pytest.raises(RightsError, match="user 'writer' lacks the D right"):
        history_maintenance.clear_history("writer")
    assert entry_ids(admin) == before
    assert len(artifacts_of(run_id)) == artifacts_before
    # W counts as R for reading.
    assert history_store.get_entry(run_id, user="writer").run_id == run_id

    # A run of another flow, or no run at all, is no entry.
    other_flow_run = str(refused.state_details.flow_run_id)
    with pytest.raises(BadInput, match="not a selective sync"):
        history_store.get_entry(other_flow_run, user=admin)
    with pytest.raises(BadInput, match="no Sync History entry has run id"):
        history_store.get_entry("00000000-0000-0000-0000-000000000000", user=admin)
    with pytest.raises(BadInput, match="no Sync History entry matches"):
        history_store.delete_entry("zzzz-not-a-run", user=admin)


def test_in_progress_entry_is_listed_and_not_deleted(demo, admin, monkeypatch):
    import sqlite3
    import threading
    import time

    from prefect.artifacts import Artifact

    from flows.history_store import clear, delete_entry, list_entries

    # The sync's write waits on the held lock (no retry needed), so the run stays In Progress
    # for as long as the test holds it, however slow the machine is.
    monkeypatch.setenv("SELECTIVE_SYNC_SQLITE_BUSY_TIMEOUT_S", "90")
    key = demo.manifest["PersonIdentity"]["mismatched"][0]
    release = threading.Event()
    locked = threading.Event()

    def hold_write_lock():
        # Taken once the request is in the ledger, before its key is written.
        conn = sqlite3.connect(demo.dir / "state.db", timeout=10)
        deadline = time.monotonic() + 90
        while not conn.execute("SELECT 1 FROM sync_request").fetchone():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(90)
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold_write_lock)
    holder.start()
    done: list = []
    runner = threading.Thread(target=lambda: done.append(run_sync("PersonIdentity", [key], admin)))
    runner.start()
    try:
        assert locked.wait(90), "the request never reached the ledger"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [e for e in list_entries(limit=5, user=admin) if e.status == "In Progress"]
            if running:
                break
            time.sleep(0.2)
        assert running, "the running request never showed as In Progress"
        entry = running[0]
        assert entry.completed_at is None and entry.records == "-/1"
        # A request still running after IN_PROGRESS_AFTER_S shows In Progress in the UI's
        # View History table too.
        row = None
        while time.monotonic() < deadline and row is None:
            table = Artifact.get("sync-history-275")
            lines = table.data.splitlines() if table else []
            row = next((r for r in lines if entry.run_id in r and "In Progress" in r), None)
            time.sleep(0.2)
        assert row is not None, "the View History table never showed the request In Progress"
        with pytest.raises(BadInput, match="In Progress"):
            delete_entry(entry.run_id, user=admin)
        assert entry.run_id in [e.run_id for e in clear(user=admin).skipped]
    finally:
        release.set()
        holder.join()
        runner.join(120)
    run_id, result = done[0]
    assert run_id == entry.run_id and result.keys[0].outcome is Outcome.SYNCED
    assert entry_ids(admin) == [run_id]


def test_a_run_the_runner_cancels_is_closed_by_its_hook(demo, admin):
    """The Runner (serve, workers) runs on_cancellation and on_crashed hooks itself, with
    keywords: the hook closes the request in the ledger and the table shows it."""
    from datetime import UTC, datetime

    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client
    from prefect.runner._hook_runner import _run_hooks
    from prefect.states import Cancelled

    from flows.history_store import get_entry
    from flows.sync_request import selective_sync
    from selective_sync.db import make_engine
    from selective_sync.ledger import open_request
    from selective_sync.settings import get_settings

    key = demo.manifest["PersonIdentity"]["mismatched"][0]
    params = {"object": "PersonIdentity", "ids": str(key), "requested_by": admin}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(selective_sync, parameters=params)
    engine = make_engine(get_settings().resolved_state_url)
    try:
        open_request(
            engine,
            run_id=str(run.id),
            run_name=run.name,
            district=275,
            object_name="PersonIdentity",
            requested_by=admin,
            requested_at=datetime.now(UTC),
            check_dependencies=False,
            dry_run=False,
            keys=[key],
        )
    finally:
        engine.dispose()
    assert get_entry(str(run.id), user=admin).status == "In Progress"

    state = Cancelled(message="Cancelled from the UI")
    asyncio.run(_run_hooks(selective_sync.on_cancellation_hooks, run, selective_sync, state))
    entry = get_entry(str(run.id), user=admin)
    assert entry.status == "Cancelled" and entry.failure == "Cancelled from the UI"
    table = Artifact.get("sync-history-275").data
    row = next(line for line in table.splitlines() if str(run.id) in line)
    assert "| Cancelled |" in row


# ---------------------------------------------------------------- the CLI


def cli(args: list[str], env: dict[str, str], stdin: str | None = None):
    return subprocess.run(
        CLI + args, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_cli_against_the_same_api(demo, admin, three_keys):
    import prefect.settings

    # The harness points only this process at its API (a settings context, not the
    # environment): the child processes are told explicitly.
    env = dict(os.environ, PREFECT_API_URL=prefect.settings.PREFECT_API_URL.value())
    grant(admin, "reader", "R")
    run_id, _ = run_sync("PersonIdentity", three_keys, admin)
    before = entry_ids(admin)

    listed = cli(["history", "list", "--json", "--user", "reader"], env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["run_id"] for r in rows] == before
    assert rows[0]["records"] == {"succeeded": 2, "total": 3}

    refused = cli(["history", "delete", run_id, "--user", "reader"], env)
    assert refused.returncode == 1 and refused.stderr.startswith("error: user 'reader' lacks")
    declined = cli(["history", "clear", "--user", admin], env, stdin="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stderr + declined.stdout
    assert entry_ids(admin) == before

    cleared = cli(["history", "clear", "--yes", "--user", admin], env)
    assert cleared.returncode == 0, cleared.stderr
    assert f"deleted {len(before)} Sync History entries of district 275" in cleared.stdout
    assert entry_ids(admin) == []


def test_cli_tables(demo, admin, three_keys, monkeypatch):
    """The human-readable output, in-process (subprocesses cost seconds each)."""
    from rich.console import Console
    from typer.testing import CliRunner

    from selective_sync.cli import history

    monkeypatch.setattr(history, "console", Console(width=200))
    run_id, _ = run_sync("PersonIdentity", three_keys, admin)
    runner = CliRunner()

    table = runner.invoke(history.app, ["list", "--user", admin])
    assert table.exit_code == 0, table.output
    header = next(line for line in table.output.splitlines() if "Requested" in line)
    columns = ["Run", "Requested", "User", "Status", "Completed", "Object", "Keys", "Records"]
    assert [header.index(c) for c in columns] == sorted(header.index(c) for c in columns)
    assert run_id[:8] in table.output and "2/3" in table.output

    shown = runner.invoke(history.app, ["show", run_id[:8], "--user", admin])
    assert shown.exit_code == 0, shown.output
    for text in ("Complete", "PersonIdentity", admin, "Records", "2/3", "not_found"):
        assert text in shown.output
    outcome_lines = [line for line in shown.output.splitlines() if "synced" in line]
    assert {str(k) for k in three_keys[:2]} <= {line.split()[1] for line in outcome_lines}

    deleted = runner.invoke(history.app, ["delete", run_id[:8], "--user", admin])
    assert deleted.exit_code == 0 and run_id in deleted.output
    assert run_id not in entry_ids(admin)


def test_the_history_outlives_prefects_database(
    demo, admin, three_keys, tmp_path, seed_prefect_home
):
    """Prefect's database lost (here: the CLI given a new, empty one): the ledger still
    lists the request and rebuilds its report; the rebuild puts it back in the UI's table."""
    from pypdf import PdfReader

    run_id, result = run_sync("PersonIdentity", three_keys, admin)
    home = tmp_path / "new-prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Starting the ephemeral API takes longer than Prefect's 20 s on a busy machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }

    listed = cli(["history", "list", "--json", "--user", admin], env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["run_id"] == run_id and row["records"] == {"succeeded": 2, "total": 3}
    shown = cli(["history", "show", run_id[:8], "--json", "--user", admin], env)
    assert [o["outcome"] for o in json.loads(shown.stdout)["outcomes"]] == [
        k.outcome.value for k in result.keys
    ]
    # Listing and showing read the ledger alone: no Prefect database was even created.
    assert not (home / "prefect.db").exists()
    seed_prefect_home(home)  # an empty one, as Prefect would make (made faster)

    pdf = tmp_path / "again.pdf"
    built = cli(["report", run_id[:8], "--format", "pdf", "-o", str(pdf), "--user", admin], env)
    assert built.returncode == 0, built.stderr
    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert str(three_keys[0]) in text and "2/3" in text.replace(" ", "")

    rebuilt = cli(["history", "rebuild-artifacts", "--user", admin], env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "1 entries" in rebuilt.stdout
    # Read from the database that API wrote (starting a second API to ask it would double
    # the test's cost): one table artifact, this district's, listing the request.
    with contextlib.closing(sqlite3.connect(home / "prefect.db")) as conn:
        tables = conn.execute(
            "SELECT data FROM artifact WHERE key = ?", ("sync-history-275",)
        ).fetchall()
    assert len(tables) == 1, tables
    table = json.loads(tables[0][0])
    assert run_id in table and "2/3" in table
