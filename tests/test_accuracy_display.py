"""One accuracy figure everywhere: the CLI table, ``--json``, the stored summary's artifact,
the flow's log line and the PDF say the same, rounded down (1 error in 30,000 is 99.99%)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from helpers import forget_summaries
from pypdf import PdfReader
from typer.testing import CliRunner

from selective_sync.models import ColumnDiff, DistrictVerification, ObjectVerification, RecordIssue
from selective_sync.text import accuracy_hundredths, format_accuracy

WHEN = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
# PersonIdentity: 1 error in 30,000 (rounding would say 100.00%); Enrollment: 3 in 127,
# 97.637...% (rounding would say 97.64%); overall 4 in 30,127, 99.986...% (not 99.99%).
EXPECTED = {"PersonIdentity": "99.99%", "Enrollment": "97.63%"}
OVERALL = "99.98%"


def verification(when: datetime = WHEN) -> DistrictVerification:
    person = ObjectVerification(
        "PersonIdentity",
        275,
        when,
        at_district=30_000,
        at_state=29_999,
        missing_at_state=[5],
        issues=[RecordIssue(5, "missing_at_state")],
    )
    enrollment = ObjectVerification(
        "Enrollment",
        275,
        when,
        at_district=127,
        at_state=127,
        mismatched=[1, 2, 3],
        issues=[
            RecordIssue(k, "mismatched", (ColumnDiff("grade", "09", "10"),)) for k in (1, 2, 3)
        ],
    )
    return DistrictVerification(275, "MAPLE VALLEY", [person, enrollment])


def test_formatter_rounds_down_in_integer_arithmetic():
    assert format_accuracy(30_000, 1) == "99.99%"
    assert format_accuracy(127, 3) == "97.63%" and f"{100 * 124 / 127:.2f}" == "97.64"
    assert format_accuracy(100, 29) == "71.00%"  # no float artefact (0.71 * 100)
    assert format_accuracy(0, 0) == "100.00%" and format_accuracy(3, 3) == "0.00%"
    assert accuracy_hundredths(30_127, 4) == 9998


def test_every_output_says_the_same(demo, admin, tmp_path, prefect_api):
    from prefect import flow
    from prefect.artifacts import Artifact
    from prefect.runtime import flow_run

    from flows.cli import app, register
    from selective_sync.reports import verification_report_from_result
    from selective_sync.reports.render import render_report
    from tasks.verify import store_summary

    # This session's API holds other tests' summaries of district 275, and a stored
    # summary is read back per object across recent versions: start from none.
    forget_summaries(275)
    summary = verification(datetime.now(UTC))

    @flow(name="store-test-summary")
    def store() -> None:
        store_summary(summary, 275, flow_run.get_id(), None)

    store()
    register()
    runner = CliRunner()
    table = runner.invoke(app, ["summary", "--user", admin], env={"COLUMNS": "120"})
    assert table.exit_code == 0, table.output
    # Table or stacked layout: each object's figure comes after its name, before the next.
    person_part, enrollment_part = table.output.split("PersonIdentity", 1)[1].split("Enrollment", 1)
    assert EXPECTED["PersonIdentity"] in person_part and "97.63%" not in person_part
    assert EXPECTED["Enrollment"] in enrollment_part
    assert OVERALL in table.output and "100.00%" not in table.output

    shown = json.loads(runner.invoke(app, ["summary", "--user", admin, "--json"]).output)
    assert shown["district"]["overall_accuracy"] == 99.98
    assert {o["object"]: o["accuracy"] for o in shown["objects"]} == {
        "PersonIdentity": 99.99,
        "Enrollment": 97.63,
    }

    artifact = Artifact.get("verification-summary-275")
    rows = json.loads(artifact.data)
    assert {r["object"]: r["accuracy"] for r in rows} == EXPECTED
    assert artifact.description.endswith(f"overall accuracy {OVERALL}")

    report = verification_report_from_result(summary, WHEN)
    render_report(report, tmp_path / "v.pdf", "pdf")
    text = " ".join(page.extract_text() for page in PdfReader(tmp_path / "v.pdf").pages)
    assert all(figure in text for figure in EXPECTED.values()) and OVERALL in text
    assert "100.00%" not in text and "97.64%" not in text


@pytest.mark.parametrize(("distinct", "errors"), [(30_000, 1), (127, 3), (7, 1), (10**9, 1)])
def test_json_number_is_the_printed_figure(distinct, errors):
    from selective_sync.models import accuracy

    assert f"{accuracy(distinct, errors):.2f}%" == format_accuracy(distinct, errors)
