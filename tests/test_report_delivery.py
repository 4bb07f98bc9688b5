"""Report delivery: reports stored and linked by the flows, rebuilt by the CLI, and served
over real HTTP on loopback with the R right checked."""

from __future__ import annotations

import csv
import http.client
import io
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import openpyxl
import pytest
from docx import Document
from docx.oxml.ns import qn
from pypdf import PdfReader
from typer.testing import CliRunner

from selective_sync.errors import BadInput
from selective_sync.reports import MEDIA_TYPES
from selective_sync.reports.model import FAILED_HEADING, NOT_FOUND_HEADING, SUCCESSFUL_HEADING
from selective_sync.reports.storage import LinkSigner, ReportStorage, StoredReport
from selective_sync.rights import ALL_DISTRICTS, RightsError, RightsStore

pytestmark = pytest.mark.usefixtures("prefect_api")

ABSENT = 999_999_999
CLI = [sys.executable, "-m", "flows.cli"]
HEADINGS = {
    "failed": FAILED_HEADING,
    "successful": SUCCESSFUL_HEADING,
    "not_found": NOT_FOUND_HEADING,
}


# ---------------------------------------------------------------- helpers


@pytest.fixture
def server(demo, monkeypatch):
    """A report server on a free loopback port; the flows' links point at it."""
    from selective_sync.reports.server import make_server

    srv = make_server("127.0.0.1", 0)
    monkeypatch.setenv("SELECTIVE_SYNC_REPORTS_BASE_URL", srv.url)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def fetch(url: str, method: str = "GET"):
    """(status, headers, body) of one request, the path sent exactly as given."""
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        conn.request(method, split.path + (f"?{split.query}" if split.query else ""))
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def grant(admin: str, user: str, rights: str) -> None:
    with RightsStore.from_settings() as store:
        store.grant(admin, user, rights, district=ALL_DISTRICTS)


def run_flow(flow, **kwargs):
    state = flow(return_state=True, **kwargs)
    return str(state.state_details.flow_run_id), state


def links_of(run_id: str) -> dict[str, str]:
    """The run's report link artifacts: key -> data (Prefect 3.9 stores links as markdown)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {a.key: a.data for a in artifacts if "-report-" in (a.key or "")}


def link_url(data: str) -> str:
    """A link artifact's data is markdown: ``[text](url)``."""
    match = re.search(r"\((https?://[^)]+)\)\s*$", data.strip())
    return match.group(1) if match else data.strip()


def invoke(args: list[str]):
    """The CLI in-process (subprocesses cost seconds each); errors stay exceptions."""
    from flows.cli import app, register

    register()
    return CliRunner().invoke(app, args)


def section_texts(text: str) -> dict[str, str]:
    """The text of each ID section, split at the section headings."""
    spans = sorted(
        (m.start(), m.end(), name)
        for name, heading in HEADINGS.items()
        for m in [re.search(re.escape(heading) + r" \([\d,]+\)", text)]
        if m
    )
    assert len(spans) == 3, f"missing a section heading in {text[:500]!r}"
    out = {}
    for i, (_, end, name) in enumerate(spans):
        stop = spans[i + 1][0] if i + 1 < len(spans) else len(text)
        out[name] = text[end:stop]
    return out


def assert_sections(text: str, expected: dict[str, list[int]]) -> None:
    sections = section_texts(text)
    for name, keys in expected.items():
        for key in keys:
            assert re.search(rf"(?m)^{key}\b|\b{key}\b", sections[name]), (key, name)
            for other, body in sections.items():
                if other != name and other != "failed":  # reasons may quote other IDs
                    assert not re.search(rf"\b{key}\b", body), (key, "also in", other)


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(str(path)).pages)


def docx_text(path: Path) -> str:
    """Paragraphs and table cells in body order (so sections split right), one per line."""
    doc = Document(str(path))
    body = doc.element.body
    lines = [p.text for p in doc.sections[0].header.paragraphs]  # the running header
    for el in body.iterchildren():
        if el.tag == qn("w:tbl"):
            for cell in el.iter(qn("w:tc")):
                lines.append("".join(t.text or "" for t in cell.iter(qn("w:t"))))
        else:
            lines.append("".join(t.text or "" for t in el.iter(qn("w:t"))))
    return "\n".join(lines)


@pytest.fixture
def enrollment_keys(demo):
    """An Enrollment request with every outcome: failed, successful, not found."""
    fails = demo.manifest["will_fail"]["Enrollment"]
    return {
        "failed": [fails["parent_missing"][0], fails["unmapped_code"][0]],
        "successful": [demo.manifest["Enrollment"]["mismatched"][0]],
        "not_found": [ABSENT],
    }


# ---------------------------------------------------------------- flows store and link


def test_sync_run_links_reports_made_on_first_open_and_the_cli_rebuilds_them(
    demo, admin, server, enrollment_keys, tmp_path
):
    from flows.sync_request import selective_sync

    ids = [k for keys in enrollment_keys.values() for k in keys]
    run_id, state = run_flow(selective_sync, object="Enrollment", ids=ids, requested_by=admin)
    assert state.is_completed(), state.message

    storage = ReportStorage.from_settings()
    links = links_of(run_id)
    assert set(links) == {"sync-report-pdf-275", "sync-report-docx-275"}
    # Linked, not made: nothing is rendered until someone opens a link.
    assert not list(storage.root.glob(f"sync/{run_id}.*"))
    for fmt in ("pdf", "docx"):
        path = storage.path(StoredReport.sync(run_id, fmt))
        url = link_url(links[f"sync-report-{fmt}-275"])
        assert url.startswith(f"{server.url}/reports/{run_id}.{fmt}?user={admin}&sig=")
        # What a click in the Prefect UI does: GET the link, get the file (made now).
        status, headers, body = fetch(url)
        assert status == 200, body
        assert path.is_file() and path.stat().st_size > 0
        assert headers["Content-Type"] == MEDIA_TYPES[fmt]
        assert body == path.read_bytes()
        assert headers["Cache-Control"] == "no-store"
    assert_sections(pdf_text(storage.path(StoredReport.sync(run_id, "pdf"))), enrollment_keys)

    # Built again from what the history holds, by the run id or its first characters.
    pdf, docx = tmp_path / "again.pdf", tmp_path / "again.docx"
    done = invoke(["report", run_id, "--format", "pdf", "-o", str(pdf), "--user", admin])
    assert done.exit_code == 0, done.output
    assert run_id in done.output
    done = invoke(["report", run_id[:8], "-o", str(docx), "--user", admin])  # format from name
    assert done.exit_code == 0, done.output
    text = pdf_text(pdf)
    assert "275 MAPLE VALLEY District" in text and "Page 1 of" in text
    assert "The Enrollment sync performed on" in text and f"by {admin}" in text
    assert_sections(text, enrollment_keys)
    assert_sections(docx_text(docx), enrollment_keys)
    assert "is not at the state" in text and "is not at the state" in docx_text(docx)


def test_reports_are_made_on_the_first_request_and_the_file_is_reused(
    demo, admin, server, enrollment_keys
):
    """A fresh run's links serve a real PDF and DOCX rendered on the first request, from
    the ledger; later requests (the View History table's links too) get the same file."""
    from prefect.artifacts import Artifact

    from flows.sync_request import selective_sync

    grant(admin, "reader", "R")
    ids = [k for keys in enrollment_keys.values() for k in keys]
    run_id, state = run_flow(selective_sync, object="Enrollment", ids=ids, requested_by=admin)
    assert state.is_completed(), state.message
    storage = ReportStorage.from_settings()
    pdf_path = storage.path(StoredReport.sync(run_id, "pdf"))
    docx_path = storage.path(StoredReport.sync(run_id, "docx"))
    assert not pdf_path.exists() and not docx_path.exists()

    links = {k.split("-")[2]: link_url(v) for k, v in links_of(run_id).items()}
    status, headers, first = fetch(links["pdf"])
    assert status == 200, first
    assert first[:5] == b"%PDF-" and first == pdf_path.read_bytes()
    assert not docx_path.exists()  # only what was asked for
    made = pdf_path.stat()
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(first)).pages)
    assert "275 MAPLE VALLEY District" in text and f"by {admin}" in text
    assert_sections(text, enrollment_keys)

    # Reused: the same bytes, the same file (not rendered again).
    again = fetch(links["pdf"])
    assert again[0] == 200 and again[2] == first
    assert (pdf_path.stat().st_mtime_ns, pdf_path.stat().st_ino) == (made.st_mtime_ns, made.st_ino)

    # The View History table's row links the same reports (issued to the requester).
    table = Artifact.get("sync-history-275").data
    row = next(line for line in table.splitlines() if run_id in line)
    docx_link = re.search(r"\[DOCX\]\(([^)]+)\)", row).group(1)
    assert urlsplit(docx_link).path == f"/reports/{run_id}.docx"
    status, headers, body = fetch(docx_link)
    assert status == 200, body
    assert headers["Content-Disposition"].startswith("attachment;")
    assert body == docx_path.read_bytes()
    assert_sections(docx_text(docx_path), enrollment_keys)
    # Another reader's link to the same report gets the same file.
    reader = LinkSigner.from_settings().link(
        server.url, StoredReport.sync(run_id, "docx"), "reader"
    )
    assert fetch(reader)[2] == body


def test_a_failed_render_leaves_the_run_complete_and_says_how_to_get_the_report(
    demo, admin, server, tmp_path
):
    from flows.sync_request import selective_sync

    key = demo.manifest["PersonIdentity"]["mismatched"][0]
    run_id, state = run_flow(selective_sync, object="PersonIdentity", ids=[key], requested_by=admin)
    assert state.is_completed(), state.message
    url = link_url(links_of(run_id)["sync-report-pdf-275"])
    # The report folder cannot hold the file: a file stands where its folder goes.
    storage = ReportStorage.from_settings()
    blocker = storage.root / "sync"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")

    status, headers, body = fetch(url)
    assert status == 500, body
    message = body.decode()
    assert f"selective-sync report {run_id} --format pdf -o FILE" in message, message
    assert "cannot create the report folder" in message
    assert headers["Content-Type"].startswith("text/plain")
    assert blocker.read_text() == "not a folder"
    # The run and its history are untouched by the report's failure.
    from flows.history_store import get_entry

    entry = get_entry(run_id, user=admin)
    assert entry.status == "Complete" and entry.records == "1/1"
    # What the message says works: the CLI builds it from the history.
    out = tmp_path / "r.pdf"
    done = invoke(["report", run_id, "--format", "pdf", "-o", str(out), "--user", admin])
    assert done.exit_code == 0, done.output
    assert str(key) in pdf_text(out)
    # And once the folder can be written, the link makes and serves it.
    blocker.unlink()
    status, _, body = fetch(url)
    assert status == 200 and body[:5] == b"%PDF-"
    assert body == storage.path(StoredReport.sync(run_id, "pdf")).read_bytes()


def test_a_report_of_an_unfinished_or_unknown_request_is_not_made(demo, admin, server):
    from selective_sync.ledger import open_request

    signer = LinkSigner.from_settings()
    storage = ReportStorage.from_settings()
    unknown = StoredReport.sync(uuid.uuid4(), "pdf")
    status, _, body = fetch(signer.link(server.url, unknown, admin))
    assert status == 404 and b"is no selective sync in the Sync History" in body

    # A request still In Progress (its heartbeat fresh): no partial report is kept.
    from datetime import UTC, datetime

    from selective_sync.db import make_engine
    from selective_sync.settings import get_settings

    run_id = str(uuid.uuid4())
    engine = make_engine(get_settings().resolved_state_url)
    try:
        open_request(
            engine,
            run_id=run_id,
            run_name="PersonIdentity x1 by test",
            district=275,
            object_name="PersonIdentity",
            requested_by=admin,
            requested_at=datetime.now(UTC),
            check_dependencies=False,
            dry_run=False,
            keys=[demo.manifest["PersonIdentity"]["mismatched"][0]],
        )
    finally:
        engine.dispose()
    running = StoredReport.sync(run_id, "pdf")
    status, _, body = fetch(signer.link(server.url, running, admin))
    assert status == 404 and b"In Progress" in body and b"once it has finished" in body
    assert not storage.path(running).exists()


def test_report_failure_is_logged_and_the_run_and_history_stay_complete(
    demo, admin, monkeypatch, tmp_path
):
    from flows.history_store import get_entry
    from flows.sync_request import selective_sync

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("SELECTIVE_SYNC_REPORT_DIR", str(blocker))
    key = demo.manifest["PersonIdentity"]["mismatched"][0]
    run_id, state = run_flow(selective_sync, object="PersonIdentity", ids=[key], requested_by=admin)
    assert state.is_completed(), state.message
    assert links_of(run_id) == {}
    entry = get_entry(run_id, user=admin)
    assert entry.status == "Complete" and entry.records == "1/1"


def test_verification_summary_run_stores_and_links_pdf_docx_csv_xlsx(demo, admin, server):
    from flows.verification_summary import verification_summary

    grant(admin, "reader", "R")
    run_id, state = run_flow(verification_summary, requested_by="reader")
    assert state.is_completed(), state.message
    links = links_of(run_id)
    formats = ("pdf", "docx", "xlsx", "csv")
    assert set(links) == {f"verification-report-{f}-275" for f in formats}
    storage = ReportStorage.from_settings()
    for fmt in formats:
        url = link_url(links[f"verification-report-{fmt}-275"])
        assert url.startswith(f"{server.url}/verification/275/{run_id}.{fmt}?user=reader&sig=")
        status, headers, body = fetch(url)
        assert status == 200, body
        assert headers["Content-Type"] == MEDIA_TYPES[fmt]
        assert body == storage.path(StoredReport.verification(275, run_id, fmt)).read_bytes()
        if fmt == "xlsx":
            book = openpyxl.load_workbook(io.BytesIO(body))
            assert book.sheetnames[:2] == ["Summary", "Districts"]
            keys = {r[0] for r in book["PersonIdentity"].iter_rows(min_row=2, values_only=True)}
            assert demo.manifest["PersonIdentity"]["mismatched"][0] in keys
            assert headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    mismatched = demo.manifest["PersonIdentity"]["mismatched"][0]
    assert rows[0][:3] == ["object", "key", "issue"]
    assert ["PersonIdentity", str(mismatched)] in [r[:2] for r in rows]

    with pytest.raises(RightsError, match="lacks the R right"):
        verification_summary(requested_by="nobody")


# ---------------------------------------------------------------- the HTTP server


def test_downloads_need_a_signed_link_of_a_user_holding_r(demo, admin, server):
    storage = ReportStorage.from_settings()
    signer = LinkSigner.from_settings()
    ref = StoredReport.sync(uuid.uuid4(), "pdf")
    storage.path(ref).parent.mkdir(parents=True, exist_ok=True)
    storage.path(ref).write_bytes(b"%PDF-1.7 stand-in bytes")
    for user, rights in (("reader", "R"), ("writer", "W"), ("deleter", "D")):
        grant(admin, user, rights)

    def status(user: str, r: StoredReport = ref) -> int:
        return fetch(signer.link(server.url, r, user))[0]

    assert (storage.root / ".link-key").stat().st_mode & 0o777 == 0o600
    assert status(admin) == 200
    assert status("reader") == 200
    assert status("writer") == 200  # W counts as R
    assert status("deleter") == 403  # D alone does not
    assert status("stranger") == 403  # unknown user
    # R on district 275 alone does not reach a run the ledger does not know (its district
    # is unknown): only R on all districts does; the refusal is recorded.
    with RightsStore.from_settings() as store:
        store.grant(admin, "reader-275", "R", district=275)
    got, _headers, body = fetch(signer.link(server.url, ref, "reader-275"))
    assert (
        got == 403 and "lacks the R right" in body.decode() and "on all districts" in body.decode()
    )
    with RightsStore.from_settings() as store:
        (refusal,) = store.refusals(admin, user="reader-275")
    assert (refusal.entry_point, refusal.right, refusal.district) == ("report-server", "R", 0)
    assert refusal.asked == f"GET {ref.url_path}"
    got, headers, body = fetch(signer.link(server.url, ref, "reader"), "HEAD")
    assert (got, headers["Content-Length"], body) == (200, "23", b"")
    got, headers, body = fetch(f"{server.url}{ref.url_path}")
    assert got == 401 and "signed link" in body.decode()
    assert headers["WWW-Authenticate"].startswith("SelectiveSync-Link")

    reader_link = signer.link(server.url, ref, "reader")
    assert fetch(reader_link.replace("user=reader", f"user={admin}"))[0] == 403
    assert fetch(reader_link[:-4] + "0000")[0] == 403
    other = StoredReport.sync(uuid.uuid4(), "pdf")
    stolen = signer.link(server.url, ref, "reader").replace(ref.run_id, other.run_id)
    assert fetch(stolen)[0] == 403
    assert status("reader", other) == 404  # a valid link, but no such file
    forged = LinkSigner(b"0123456789abcdef-not-the-key").link(server.url, ref, admin)
    assert fetch(forged)[0] == 403

    with RightsStore.from_settings() as store:
        store.revoke(admin, "reader", district=ALL_DISTRICTS)
    assert fetch(reader_link)[0] == 403  # revoking R revokes the links at once

    query = "?" + urlsplit(signer.link(server.url, ref, admin)).query
    for path in (
        "/reports/../rights.db",
        "/reports/..%2frights.db",
        "/reports/%2e%2e/.link-key",
        f"/reports/{ref.run_id}.pdf/../../rights.db",
        f"/verification/275/../../sync/{ref.run_id}.pdf",
        "/.link-key",
        "/district.db",
        f"/reports/{ref.run_id}.PDF",
        f"/reports/{ref.run_id}.xls",
    ):
        got, _, body = fetch(f"{server.url}{path}{query}")
        assert got == 404, (path, got, body)


# ---------------------------------------------------------------- the CLI


def test_summary_cli_writes_csv_pdf_and_docx(demo, admin, tmp_path):
    mismatched = demo.manifest["PersonIdentity"]["mismatched"][0]
    for fmt in ("csv", "pdf", "docx"):
        out = tmp_path / f"summary.{fmt}"
        # --reverify: the stored summary of district 275 may be another test's demo.
        args = ["--object", "PersonIdentity", "--reverify", "--user", admin]
        done = invoke(["summary", *args, "--report", fmt, "-o", str(out)])
        assert done.exit_code == 0, done.output
        assert f"wrote the Verification Summary ({fmt})" in done.output
        if fmt == "csv":
            text = out.read_text(encoding="utf-8")
        elif fmt == "pdf":
            text = pdf_text(out)
        else:
            text = docx_text(out)
        assert str(mismatched) in text
        if fmt != "csv":
            assert "275 MAPLE VALLEY District" in text and "Verification Summary" in text

    for args, message in (
        (["--report", "xls", "-o", str(tmp_path / "s.xls")], "unknown report format"),
        (["--report", "pdf"], "needs --output"),
        (["-o", str(tmp_path / "s.pdf")], "needs --report"),
        (["--report", "pdf", "-o", str(tmp_path / "no" / "s.pdf")], "no such directory"),
    ):
        done = invoke(["summary", *args])
        assert isinstance(done.exception, BadInput) and message in str(done.exception), args
    assert not (tmp_path / "s.xls").exists() and not (tmp_path / "no").exists()


def test_report_cli_bad_input(demo, admin, tmp_path):
    from flows.verification_summary import verification_summary

    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "r.pdf"
    summary_run, _ = run_flow(verification_summary, requested_by=admin)
    grant(admin, "deleter", "D")
    cases = [
        (["report", str(uuid.uuid4()), "-o", str(out)], BadInput, "no Sync History entry"),
        (["report", summary_run, "-o", str(out)], BadInput, "not a selective sync"),
        (["report", "abcd1234", "--format", "xls", "-o", str(out)], BadInput, "unknown report"),
        (["report", "abcd1234", "--format", "csv", "-o", str(out)], BadInput, "Verification"),
        (["report", "abcd1234", "-o", str(folder / "r.txt")], BadInput, "give --format"),
        (["report", "abcd1234", "-o", str(folder / "no" / "r.pdf")], BadInput, "no such"),
        (["report", "abcd1234", "-f", "pdf", "-o", str(folder)], BadInput, "is a directory"),
        (["report", summary_run, "-o", str(out), "--user", "deleter"], RightsError, "lacks the R"),
    ]
    for args, error, message in cases:
        done = invoke([*args, "--user", admin] if "--user" not in args else args)
        assert isinstance(done.exception, error), (args, done.output, done.exception)
        assert message in str(done.exception), (args, str(done.exception))
    assert sorted(p.name for p in folder.iterdir()) == [], "something was written"

    # The real command line: one 'error:' line on stderr, exit code 1, nothing written.
    proc = subprocess.run(
        [*CLI, "report", str(uuid.uuid4()), "--format", "xls", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: unknown report format 'xls'"), proc.stderr
    assert proc.stderr.count("\n") == 1 and not out.exists()
