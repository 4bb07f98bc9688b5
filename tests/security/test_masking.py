"""Database passwords never appear in logs, artifacts, run states, reports or errors.

PostgreSQL here trusts local connections whatever the password, so the honest test is
MariaDB: a user created for this test with a unique password, in a unique database that
holds the demo district. With the right password the flows run and everything they leave
behind (Prefect logs read back from the API, artifacts, run and task states, the report
files) is searched for it; with a wrong one the flows and the CLI fail, and their messages
show the URL masked (``***``) and neither password.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import tally
from dbservers import _admin_connection, _params, server_database
from docx import Document
from pypdf import PdfReader
from sqlalchemy.engine import URL, make_url

from .conftest import cli_process, release_engines, run_flow

pytestmark = pytest.mark.usefixtures("prefect_api")


@contextmanager
def password_user(database_url: str):
    """A MariaDB user with a random password, allowed on that one database only."""
    database = make_url(database_url).database
    user = f"sstest_{uuid.uuid4().hex[:10]}"
    password = f"Pw-{uuid.uuid4().hex}"
    hosts = ("%", "localhost", "127.0.0.1")
    conn = _admin_connection("mariadb")
    try:
        with conn.cursor() as cur:
            for host in hosts:
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password))
                cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@%s", (user, host))
    finally:
        conn.close()
    p = _params("mariadb")

    def url(secret: str) -> str:
        return URL.create(
            "mysql+pymysql",
            username=user,
            password=secret,
            host=p["host"],
            port=p["port"],
            database=database,
            query={"charset": "utf8mb4"},
        ).render_as_string(hide_password=False)

    try:
        yield user, password, url
    finally:
        conn = _admin_connection("mariadb")
        try:
            with conn.cursor() as cur:
                for host in hosts:
                    cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
        finally:
            conn.close()


def run_traces(run_id: str) -> list[tuple[str, str]]:
    """(place, text) for everything a flow run left in the Prefect API."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    from flows.history_store import _artifacts

    APILogWorker.drain_all(timeout=10)
    places = []
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(run_id))
        places.append(("flow run state", f"{run.state.name} {run.state.message}"))
        places.append(("flow run parameters", json.dumps(run.parameters, default=str)))
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)]))
        )
        assert logs, "no logs were read back for the run"
        places.append(("logs", "\n".join(log.message for log in logs)))
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
        )
        places.append(
            ("task run states", "\n".join(f"{t.name} {t.state and t.state.message}" for t in tasks))
        )
        artifacts = _artifacts(client, [UUID(run_id)])
        places.append(
            (
                "artifacts",
                "\n".join(f"{a.key} {a.description} {json.dumps(a.data)}" for a in artifacts),
            )
        )
    return places


def report_texts(folder: Path) -> list[tuple[str, str]]:
    places = []
    for path in sorted(folder.glob("reports/**/*.*")):
        if path.suffix == ".pdf":
            text = "\n".join(p.extract_text() for p in PdfReader(path).pages)
        elif path.suffix == ".docx":
            doc = Document(str(path))
            text = "\n".join(
                [p.text for p in doc.paragraphs]
                + [c.text for t in doc.tables for r in t.rows for c in r.cells]
            )
        elif path.suffix == ".xlsx":
            from openpyxl import load_workbook

            book = load_workbook(path, read_only=True)
            text = "\n".join(
                str(value)
                for sheet in book.worksheets
                for row in sheet.iter_rows(values_only=True)
                for value in row
                if value is not None
            )
        else:
            text = path.read_text(encoding="utf-8")
        places.append((f"report {path.name}", text))
    return places


def open_sync_reports(run_id: str) -> None:
    from selective_sync.reports.on_demand import SyncReports
    from selective_sync.reports.storage import SYNC_FORMATS, StoredReport

    for fmt in SYNC_FORMATS:
        SyncReports.from_settings().path(StoredReport.sync(run_id, fmt))


def assert_hidden(places, *secrets: str) -> None:
    for place, text in places:
        for secret in secrets:
            assert secret not in text, f"{place} shows a password"
        tally.add("masking_checks")


def test_passwords_never_shown(demo, admin, monkeypatch):
    with server_database("mariadb") as root_url, password_user(root_url) as (user, pw, url):
        wrong = f"Wrong-{uuid.uuid4().hex}"
        try:
            check_passwords(demo, admin, monkeypatch, root_url, user, pw, wrong, url)
        finally:
            release_engines(url(pw), url(wrong))


def check_passwords(demo, admin, monkeypatch, root_url, user, pw, wrong, url) -> None:
    from flows.sync_request import selective_sync
    from flows.verification_summary import verification_summary
    from selective_sync.demo import generate_demo
    from selective_sync.settings import sqlite_url

    # The demo district on MariaDB, the state on this test's SQLite copy.
    folder = demo.dir / "mariadb-demo"
    folder.mkdir()
    manifest = generate_demo(
        folder,
        persons=60,
        seed=3,
        district_url=root_url,
        state_url=sqlite_url(folder / "state.db"),
    )
    monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", sqlite_url(folder / "state.db"))
    monkeypatch.setenv("SELECTIVE_SYNC_RIGHTS_URL", sqlite_url(demo.dir / "rights.db"))
    monkeypatch.setenv("SELECTIVE_SYNC_DISTRICT_URL", url(pw))
    refused = {k for keys in manifest.will_fail["PersonIdentity"].values() for k in keys}
    key = next(k for k in manifest.keys("PersonIdentity", "mismatched") if k not in refused)

    # The right password: the flows work, and nothing they leave shows it.
    places = []
    run_id, state, _ = run_flow(verification_summary, requested_by=admin)
    assert state.is_completed(), state
    places += run_traces(run_id)
    run_id, state, result = run_flow(
        selective_sync, object="PersonIdentity", ids=[key], requested_by=admin
    )
    assert state.is_completed(), state
    assert result.keys[0].outcome.value == "synced"
    places += run_traces(run_id)
    open_sync_reports(run_id)  # made when first opened: open them, as a link does
    places += report_texts(demo.dir)
    assert len(places) >= 10
    assert_hidden(places, pw)

    # A wrong password: failures name the database, masked.
    monkeypatch.setenv("SELECTIVE_SYNC_DISTRICT_URL", url(wrong))
    run_id, state, error = run_flow(verification_summary, requested_by=admin)
    assert state.is_failed()
    masked = f"mysql+pymysql://{user}:***@"
    assert masked in str(error) and masked in state.message
    traces = run_traces(run_id)
    assert masked in dict(traces)["logs"]
    assert_hidden(traces, pw, wrong)

    run_id, state, error = run_flow(
        selective_sync, object="PersonIdentity", ids=[key], requested_by=admin
    )
    assert state.is_failed()
    assert "Access denied" in str(error)
    assert_hidden(run_traces(run_id), pw, wrong)

    # The CLI: one error line, the URL masked.
    for args in (["summary"], ["sync", "PersonIdentity", str(key), "-u", admin]):
        line = cli_process(*args).error_line()
        assert masked in line, line
        assert_hidden([(f"cli {args[0]}", line)], pw, wrong)

    # The rights store on a server: its errors are masked too.
    monkeypatch.setenv("SELECTIVE_SYNC_RIGHTS_URL", url(wrong))
    for args in (["rights", "list", "-u", admin], ["history", "list", "-u", admin]):
        line = cli_process(*args).error_line()
        assert f"cannot use the rights store {masked}" in line, line
        assert_hidden([(f"cli {' '.join(args[:2])}", line)], pw, wrong)
