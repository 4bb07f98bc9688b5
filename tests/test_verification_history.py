"""The Verification Summary's own history: stored results, merges, Re-Verify and the trend,
on a real Prefect API and real SQLite files."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import sqlite3
from decimal import Decimal

import pytest
from helpers import forget_summaries, stored_summary_artifacts
from pypdf import PdfReader
from typer.testing import CliRunner

from selective_sync.models import ColumnDiff, DistrictVerification, ObjectVerification, RecordIssue
from selective_sync.rights import ALL_DISTRICTS, RightsError, RightsStore
from selective_sync.text import format_timestamp
from selective_sync.verification.codec import (
    CHUNK_BYTES,
    decode_summary,
    encode_summary,
    issues_key,
    summary_key,
)

pytestmark = pytest.mark.usefixtures("prefect_api")

DISTRICT = 275
KEY_PATTERN = re.compile(r"^[a-z0-9-]*$")
CHART_HEADING = "Accuracy over time"

ADMIN = "test-admin"  # the admin fixture's user


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def empty_store():
    """Every test starts (and leaves) district 275 with nothing stored: the API is shared
    by the whole session, and every demo is district 275."""
    forget_summaries(DISTRICT)
    yield
    forget_summaries(DISTRICT)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables as wide as they want (CliRunner's terminal is 80 columns)."""
    from rich.console import Console

    from selective_sync.cli import summary

    monkeypatch.setattr(summary, "console", Console(width=200))


def invoke(args: list[str]):
    """The CLI in-process (a subprocess would start its own ephemeral API)."""
    from flows.cli import app, register

    register()
    return CliRunner().invoke(app, args)


def cli_json(args: list[str]) -> dict:
    done = invoke([*args, "--json"])
    assert done.exit_code == 0, (done.output, done.exception)
    return json.loads(done.stdout)


def run_summary(**kwargs) -> tuple[str, DistrictVerification]:
    from flows.verification_summary import verification_summary

    kwargs.setdefault("requested_by", ADMIN)  # the admin fixture's user
    state = verification_summary(return_state=True, **kwargs)
    assert state.is_completed(), state.message
    return str(state.state_details.flow_run_id), state.result()


def in_sync_person(demo, summary: DistrictVerification) -> int:
    """A person at both sides with no issue: editing it makes a new mismatch."""
    person = next(o for o in summary.objects if o.object == "PersonIdentity")
    troubled = {i.key for i in person.issues}
    with sqlite3.connect(demo.dir / "district.db") as conn:
        keys = [k for (k,) in conn.execute("SELECT person_id FROM person ORDER BY person_id")]
    return next(k for k in keys if k not in troubled)


def rename_at_district(demo, person_id: int, last_name: str) -> None:
    with sqlite3.connect(demo.dir / "district.db") as conn:
        conn.execute(
            "UPDATE identity SET last_name = ? WHERE identity_id = "
            "(SELECT current_identity_id FROM person WHERE person_id = ?)",
            (last_name, person_id),
        )


def by_object(summary: DistrictVerification) -> dict[str, ObjectVerification]:
    return {o.object: o for o in summary.objects}


def pdf_text(path) -> tuple[str, int]:
    reader = PdfReader(str(path))
    return "\n".join(page.extract_text() or "" for page in reader.pages), len(reader.pages)


# ---------------------------------------------------------------- the codec


def test_codec_reads_back_exactly_in_chunks_in_any_order():
    """Typed values, empty and several diffs, a tiny chunk budget, chunks shuffled."""
    values = [
        None,
        "",
        "  padded ",
        "Zoë 李 😀 \u05e9\u05dc\u05d5\u05dd | <b>&amp;",
        0,
        -7,
        2**62,
        1.5,
        float("nan"),
        float("inf"),
        True,
        dt.date(2010, 5, 1),
        dt.datetime(2010, 5, 1, 7, 30, tzinfo=dt.UTC),
        dt.time(8, 15),
        Decimal("12.340"),
        b"\x00\xff",
    ]
    issues, lists = [], {"missing_at_state": [], "missing_at_district": [], "mismatched": []}
    for n in range(300):
        kind = ("missing_at_state", "missing_at_district", "mismatched")[n % 3]
        diffs = ()
        if kind == "mismatched" and n % 2:
            diffs = tuple(
                ColumnDiff(f"col{j}", values[(n + j) % len(values)], values[(n + 2 * j) % 16])
                for j in range(1 + n % 4)
            )
        # Keys out of order on purpose: the stored order is the issues' order, not the keys'.
        key = 10_000 + (n * 7919) % 300
        issues.append(RecordIssue(key, kind, diffs))
        lists[kind].append(key)
    when = dt.datetime(2026, 11, 28, 20, 15, 3, 123456, tzinfo=dt.UTC)
    original = DistrictVerification(
        DISTRICT,
        'MAPLE "VALLEY" | <x>',
        [
            ObjectVerification(
                "PersonIdentity", DISTRICT, when, 1_000, 990, issues=issues, **lists
            ),
            ObjectVerification("Enrollment", DISTRICT, when, 5, 5, keys_requested=5),
        ],
    )
    rows, chunks = encode_summary(original, "run-1", max_bytes=2_000)
    assert len(chunks) > 5 and {c.object for c in chunks} == {"PersonIdentity"}
    assert all(c.size_bytes <= 2_000 or c.rows <= 4 for c in chunks)
    tables = [json.loads(json.dumps(c.table)) for c in chunks]  # through JSON, as stored
    random.Random(3).shuffle(tables)
    decoded = decode_summary(json.dumps(rows), {"run-1": tables})
    # NaN != NaN: compare the NaN-free part exactly, and the NaNs by kind.
    nan = [d for i in decoded.objects[0].issues for d in i.diffs if d.district != d.district]
    assert nan and all(isinstance(d.district, float) for d in nan)
    assert repr(decoded) == repr(original)
    with pytest.raises(Exception, match="incomplete"):
        decode_summary(json.dumps(rows), {"run-1": tables[1:]})


# ---------------------------------------------------------------- the flow and the store


def test_stored_summary_reads_back_equal_and_small(demo, admin):
    from prefect.client.orchestration import get_client

    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database

    load_latest_summary = summaries.load_latest_summary
    assert load_latest_summary(DISTRICT, user=admin) is None
    run_id, computed = run_summary()
    person = by_object(computed)["PersonIdentity"]
    assert any(len(i.diffs) > 1 for i in person.issues), "the demo should have rich mismatches"
    stored = load_latest_summary(DISTRICT, user=admin)
    assert stored == computed  # every figure, key list, issue and column difference

    with get_client(sync_client=True) as client:
        artifacts = stored_summary_artifacts(client, DISTRICT)
    assert {a.key for a in artifacts} == {summary_key(DISTRICT), issues_key(DISTRICT)}
    assert all(KEY_PATTERN.match(a.key) for a in artifacts)
    assert all(str(a.flow_run_id) == run_id and a.type == "table" for a in artifacts)
    summary_artifact = next(a for a in artifacts if a.key == summary_key(DISTRICT))
    assert len(summary_artifact.data) < 2_000  # three rows
    assert "MAPLE VALLEY" in summary_artifact.description
    assert f"{computed.overall_accuracy:.2f}%" in summary_artifact.description
    # One issues artifact per object with issues; each well under Prefect's event limit.
    issue_chunks = [a for a in artifacts if a.key == issues_key(DISTRICT)]
    assert len(issue_chunks) == sum(1 for o in computed.objects if o.issues)
    assert all(len(json.dumps(a.data)) < CHUNK_BYTES for a in issue_chunks)


def test_partial_run_merges_and_keeps_other_timestamps(demo, admin):
    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database
    load_latest_summary = summaries.load_latest_summary
    _, first = run_summary()
    before = by_object(first)
    rename_at_district(demo, in_sync_person(demo, first), "Renamed")
    _, second = run_summary(objects=["Enrollment"])
    assert [o.object for o in second.objects] == ["Enrollment"]
    stored = by_object(load_latest_summary(DISTRICT, user=admin))
    assert list(stored) == ["PersonIdentity", "Enrollment", "Graduation"]
    assert stored["Enrollment"] == second.objects[0]
    assert stored["Enrollment"].verified_at > before["Enrollment"].verified_at
    # Not verified again: the earlier result, its timestamp and its issues, unchanged
    # (the renamed person is not among them).
    assert stored["PersonIdentity"] == before["PersonIdentity"]
    assert stored["Graduation"] == before["Graduation"]


def test_summary_shows_stored_figures_until_reverify(demo, admin):
    _, computed = run_summary()
    person_before = by_object(computed)["PersonIdentity"]
    renamed = in_sync_person(demo, computed)
    rename_at_district(demo, renamed, "Changed-After-Storing")

    shown = cli_json(["summary", "--user", admin])
    assert shown["freshly_verified"] is False
    person = next(o for o in shown["objects"] if o["object"] == "PersonIdentity")
    assert person["mismatched"] == person_before.mismatched  # the stored figures
    assert renamed not in person["mismatched"]
    assert person["verified_at"] == person_before.verified_at.isoformat()
    assert person["freshly_verified"] is False
    table = invoke(["summary", "--user", admin])
    assert table.exit_code == 0, table.output
    assert "Stored results, verified" in table.output and "--reverify" in table.output
    assert "Re-verified" not in table.output

    again = cli_json(["summary", "--reverify", "--user", admin])
    assert again["freshly_verified"] is True
    person = next(o for o in again["objects"] if o["object"] == "PersonIdentity")
    assert renamed in person["mismatched"]
    assert person["errors"] == person_before.errors + 1
    # The Re-Verify was stored: a plain summary now shows it.
    latest = cli_json(["summary", "--object", "PersonIdentity", "--user", admin])
    assert [o["object"] for o in latest["objects"]] == ["PersonIdentity"]
    assert latest["objects"][0]["mismatched"] == person["mismatched"]
    assert latest["objects"][0]["verified_at"] == person["verified_at"]


def test_first_summary_verifies_now_and_stores(demo, admin):
    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database
    load_latest_summary = summaries.load_latest_summary
    done = invoke(["summary", "--user", admin])
    assert done.exit_code == 0, (done.output, done.exception)
    assert "No stored Verification Summary of district 275: verified now" in done.output
    assert "PersonIdentity" in done.output and "Graduation" in done.output
    stored = load_latest_summary(DISTRICT, user=admin)
    assert stored is not None and len(stored.objects) == 3
    shown = cli_json(["summary", "--user", admin])
    assert shown["freshly_verified"] is False
    assert [o["verified_at"] for o in shown["objects"]] == [
        o.verified_at.isoformat() for o in stored.objects
    ]


def test_reverify_after_a_real_sync_drops_the_fixed_keys(demo, admin):
    from flows.sync_request import selective_sync

    _, computed = run_summary()
    fixed = by_object(computed)["PersonIdentity"].mismatched[:3]
    result = selective_sync(object="PersonIdentity", ids=fixed, requested_by=admin)
    assert {k.outcome.value for k in result.keys} == {"synced"}

    stale = cli_json(["summary", "--object", "PersonIdentity", "--user", admin])
    assert set(fixed) <= set(stale["objects"][0]["mismatched"])  # stored until Re-Verify
    fresh = cli_json(["summary", "--reverify", "--object", "PersonIdentity", "--user", admin])
    person = fresh["objects"][0]
    assert not set(fixed) & set(person["mismatched"])
    assert person["errors"] == stale["objects"][0]["errors"] - len(fixed)


def test_trend_and_the_pdf_chart(demo, admin, tmp_path):
    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database
    load_trend = summaries.load_trend
    single = tmp_path / "single.pdf"
    _, first = run_summary()
    done = invoke(["summary", "--user", admin, "--report", "pdf", "-o", str(single)])
    assert done.exit_code == 0, done.output
    text, _ = pdf_text(single)
    assert "Verification Summary" in text and CHART_HEADING not in text  # one run: no chart

    rename_at_district(demo, in_sync_person(demo, first), "Trend")
    run_summary(objects=["PersonIdentity"])
    run_summary()
    trend = load_trend(DISTRICT, user=admin)
    assert len(trend.runs) == 3
    assert [sorted(r.accuracy) for r in trend.runs] == [
        ["Enrollment", "Graduation", "PersonIdentity"],
        ["PersonIdentity"],  # the partial run adds a point for what it verified only
        ["Enrollment", "Graduation", "PersonIdentity"],
    ]
    times = [r.verified_at for r in trend.runs]
    assert times == sorted(times)
    person = [r.accuracy["PersonIdentity"] for r in trend.runs]
    assert person[0] > person[1] == person[2]  # the renamed person lowered it
    assert len(load_trend(DISTRICT, runs=2, user=admin).runs) == 2

    document = cli_json(["summary", "--trend", "--user", admin])
    assert [r["run_id"] for r in document["runs"]] == [r.run_id for r in trend.runs]
    assert document["runs"][1]["accuracy"] == {"PersonIdentity": round(person[1], 2)}
    table = invoke(["summary", "--trend", "--user", admin])
    assert table.exit_code == 0 and "Accuracy over the last 3 runs" in table.output

    charted = tmp_path / "charted.pdf"
    done = invoke(["summary", "--user", admin, "--report", "pdf", "-o", str(charted)])
    assert done.exit_code == 0, done.output
    text, pages = pdf_text(charted)
    assert f"{CHART_HEADING} (last 3 runs)" in text
    # The chart's labels are SVG text, one per line: the legend in object order, the
    # y axis up to 100.00%, and each run's date and time under its point.
    lines = text.splitlines()
    assert "\nPersonIdentity\nEnrollment\nGraduation\n" in text
    assert "100.00%" in lines and sum(bool(re.fullmatch(r"\d+\.\d\d%", x)) for x in lines) >= 3
    for run in trend.runs:
        day, time = format_timestamp(run.verified_at).split(" ", 1)
        assert time in lines and day in lines, time
    assert f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text
    docx = tmp_path / "charted.docx"
    done = invoke(["summary", "--user", admin, "--report", "docx", "-o", str(docx)])
    assert done.exit_code == 0, done.output
    from docx import Document

    cells = {c.text for t in Document(str(docx)).tables for row in t.rows for c in row.cells}
    assert {"Verified", "PersonIdentity", "-"} <= cells  # "-": not verified by that run


def test_reading_needs_r(demo, admin):
    from prefect.client.orchestration import get_client

    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database

    load_latest_summary, load_trend = summaries.load_latest_summary, summaries.load_trend

    with RightsStore.from_settings() as store:
        store.grant(admin, "writer", "W", district=ALL_DISTRICTS)
        store.grant(admin, "deleter", "D", district=ALL_DISTRICTS)
    for user in ("nobody", "deleter"):
        done = invoke(["summary", "--user", user])
        assert isinstance(done.exception, RightsError), done.output
        assert "lacks the R right" in str(done.exception)
        with pytest.raises(RightsError, match="lacks the R right"):
            load_latest_summary(DISTRICT, user=user)
        with pytest.raises(RightsError, match="lacks the R right"):
            load_trend(DISTRICT, user=user)
    with get_client(sync_client=True) as client:
        assert (
            stored_summary_artifacts(client, DISTRICT) == []
        )  # refused before anything was verified
    assert cli_json(["summary", "--object", "Graduation", "--user", "writer"])["objects"]
