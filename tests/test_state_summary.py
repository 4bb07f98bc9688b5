"""The state's Verification Summary: every district worst first (plain logic), its reports
read back with real readers, and `summary --all-districts` / the flow on a real Prefect API
over two real demo districts sharing one state database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from docx import Document
from pypdf import PdfReader

from selective_sync.reports.model import format_accuracy
from selective_sync.text import format_timestamp
from selective_sync.verification.codec import AccuracyTrend, TrendRun
from selective_sync.verification.state import (
    STATE_SERIES,
    state_rows,
    state_summary,
    state_trend,
)

T0 = dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.UTC)


def row(obj: str, distinct: int, errors: int, when=T0, mismatched=None) -> dict:
    return {
        "object": obj,
        "accuracy": "",
        "verified_at": when.isoformat(),
        "distinct": distinct,
        "at_district": distinct,
        "at_state": distinct,
        "errors": errors,
        "missing_at_state": 0,
        "missing_at_district": 0,
        "mismatched": errors if mismatched is None else mismatched,
        "keys_requested": None,
        "district": 1,
        "district_name": "X",
        "issues_run": "r",
        "issue_rows": errors,
        "format": 1,
    }


def test_worst_district_first_with_its_worst_object_and_floor_accuracy():
    stored = {
        # 1 error in a million: 99.99%, never a 100.00% that hides it.
        10: [row("PersonIdentity", 1_000_000, 1), row("Enrollment", 10, 0)],
        11: [row("PersonIdentity", 100, 3), row("Enrollment", 100, 9, T0 - dt.timedelta(1))],
        12: [row("PersonIdentity", 100, 0)],
    }
    districts = [(10, "TEN"), (11, "ELEVEN"), (12, "TWELVE"), (13, "NEVER")]
    summary = state_summary(districts, stored)
    assert [d.number for d in summary.districts] == [11, 10, 12, 13]
    rows = state_rows(summary, format_accuracy, format_timestamp)
    assert rows[0] == {
        "District": 11,
        "Name": "ELEVEN",
        "Overall Accuracy": "94.00%",
        "Errors": 12,
        "Verified at": format_timestamp(T0 - dt.timedelta(1)),  # its oldest object
        "Worst object": "Enrollment (91.00%)",
    }
    assert rows[1]["Overall Accuracy"] == "99.99%" and rows[1]["Worst object"].startswith(
        "PersonIdentity (99.99%)"
    )
    assert rows[2]["Worst object"] == "" and rows[2]["Overall Accuracy"] == "100.00%"
    assert rows[3]["Verified at"] == "not verified yet" and rows[3]["Overall Accuracy"] == ""
    assert (summary.distinct, summary.errors) == (1_000_310, 13)


def trend(number: int, *points) -> AccuracyTrend:
    runs = [TrendRun(f"{number}-{i}", when, counts) for i, (when, counts) in enumerate(points)]
    return AccuracyTrend(number, str(number), runs)


def test_the_state_trend_adds_up_each_districts_latest_figures_per_day():
    day2 = T0 + dt.timedelta(days=1)
    result = state_trend(
        [
            trend(1, (T0, {"P": (100, 10)}), (day2, {"P": (100, 0)})),
            trend(2, (T0 + dt.timedelta(hours=1), {"P": (50, 5), "E": (50, 5)})),
        ]
    )
    assert [r.counts[STATE_SERIES] for r in result.runs] == [(200, 20), (200, 10)]


def test_the_state_report_reads_back_the_same_in_pdf_and_docx(tmp_path):
    from selective_sync.reports import render_report
    from selective_sync.reports.state import state_report

    stored = {
        10: [row("PersonIdentity", 200, 2), row("Enrollment", 300, 0)],
        11: [row("PersonIdentity", 100, 30)],
    }
    summary = state_summary([(10, "OAK"), (11, "PINE"), (12, "ELM")], stored)
    day2 = T0 + dt.timedelta(days=1)
    chart = state_trend([trend(10, (T0, {"P": (100, 10)}), (day2, {"P": (100, 1)}))])
    report = state_report(summary, T0, chart)
    render_report(report, tmp_path / "s.pdf", "pdf")
    render_report(report, tmp_path / "s.docx", "docx")
    text = "\n".join(p.extract_text() for p in PdfReader(tmp_path / "s.pdf").pages)
    doc = Document(tmp_path / "s.docx")
    docx_text = "\n".join(p.text for p in doc.paragraphs)
    cells = ["\t".join(c.text for c in r.cells) for t in doc.tables for r in t.rows]
    for body in (text, docx_text + "\n" + "\n".join(cells)):
        assert "Verification Summary: all districts" in body
        assert "Accuracy over time" in body
        # Worst first: PINE (70.00%) before OAK (99.60%); ELM not verified, last.
        assert body.index("PINE") < body.index("OAK") < body.index("ELM")
        assert "70.00%" in body and "99.60%" in body and "not verified yet" in body
        assert "11 PINE" in body and "10 OAK" in body  # each district's own section
    assert doc.sections[0].page_width > doc.sections[0].page_height  # landscape


# ---------------------------------------------------------------- on a real Prefect API


@pytest.fixture
def two_districts(demo, tmp_path, monkeypatch):
    """Two demo districts (their own SQLite files) in one state database, from a file."""
    from selective_sync.demo import generate_demo

    manifests = {}
    for number, persons, seed in ((881, 300, 11), (882, 200, 12)):
        manifest = generate_demo(
            tmp_path / f"d{number}",
            persons=persons,
            seed=seed,
            state_url=demo.state_url,
            district_number=number,
            district_name=f"TEST {number}",
        )
        manifests[number] = json.loads(manifest.to_json())
    text = "districts:\n" + "".join(
        f"  - number: {n}\n    name: TEST {n}\n    url: sqlite:///{tmp_path}/d{n}/district.db\n"
        for n in manifests
    )
    (tmp_path / "districts.yaml").write_text(text)
    monkeypatch.setenv("SELECTIVE_SYNC_DISTRICTS_FILE", str(tmp_path / "districts.yaml"))
    monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", demo.state_url)
    return manifests


@pytest.mark.usefixtures("prefect_api")
def test_all_districts_from_the_cli_and_the_flow(two_districts, admin, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from typer.testing import CliRunner

    from flows.verification_summary import verification_summary
    from selective_sync.cli import app, register
    from selective_sync.verification.state import STATE_KEY

    register()
    runner = CliRunner()
    # Nothing stored for these districts yet: each is verified on the spot, then shown.
    done = runner.invoke(app, ["summary", "--all-districts", "--json", "--user", admin])
    assert done.exit_code == 0, done.output
    document = json.loads(done.stdout)
    numbers = [d["District"] for d in document["districts"]]
    assert sorted(numbers) == [881, 882]
    for entry in document["districts"]:
        manifest = two_districts[entry["District"]]
        errors = sum(
            len(manifest[name][kind])
            for name in ("PersonIdentity", "Enrollment", "Graduation")
            for kind in ("missing_at_state", "missing_at_district", "mismatched")
        )
        assert entry["Errors"] == errors
        distinct = sum(o["distinct"] for o in entry["objects"])
        assert entry["Overall Accuracy"] == format_accuracy(distinct, errors)
    ratios = [
        (sum(o["distinct"] for o in d["objects"]) - d["Errors"])
        / sum(o["distinct"] for o in d["objects"])
        for d in document["districts"]
    ]
    assert ratios == sorted(ratios)  # worst first

    # From stored results now (no flow run), and the report.
    done = runner.invoke(
        app,
        ["summary", "--all-districts", "--report", "pdf", "-o", str(tmp_path / "s.pdf")]
        + ["--user", admin],
    )
    assert done.exit_code == 0, done.output
    assert "Stored results" in done.output
    pdf = "\n".join(p.extract_text() for p in PdfReader(tmp_path / "s.pdf").pages)
    assert "TEST 881" in pdf and "TEST 882" in pdf

    # The flow, with the same choice; its state table artifact, worst first.
    summary = verification_summary(all_districts=True, reverify=False, requested_by=admin)
    assert [d.number for d in summary.districts] == numbers
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[STATE_KEY])),
            sort="CREATED_DESC",
            limit=1,
        )
    rows = json.loads(artifact.data)
    assert [r["District"] for r in rows] == numbers
    assert rows[0]["Overall Accuracy"] == document["districts"][0]["Overall Accuracy"]

    refused = runner.invoke(app, ["summary", "--all-districts", "--district", "881"])
    assert refused.exit_code != 0
    from selective_sync.cli.summary import summary as summary_command
    from selective_sync.errors import BadInput

    with pytest.raises(BadInput, match="no --district or --object"):
        summary_command(
            objects=None,
            district=881,
            all_districts=True,
            reverify=False,
            trend=False,
            runs=10,
            as_json=False,
            report=None,
            output=None,
            user=admin,
        )
