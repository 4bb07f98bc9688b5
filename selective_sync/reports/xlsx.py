"""Verification Summaries and the Sync History as XLSX workbooks, to work them in a spreadsheet.

The tables are built with pandas from the report models and history entries (never from a
database) and written cell by cell with XlsxWriter in constant-memory mode. Not through
``DataFrame.to_excel``: pandas picks each cell's type from its value (with openpyxl a text
starting with ``=`` becomes a formula) and writes column by column, which rules out constant
memory; here every column has one declared kind, so text always stays text.

Every sheet is one table: the header in row 1, frozen, with an autofilter. Text cells are
typed as text and their columns formatted ``@``, so a state ID ``000123`` keeps its zeros
and a value like ``1E5`` or ``2026-01-02`` is not turned into a number or a date, also when
a person edits the cell. A text that a spreadsheet would run as a formula (the CSV
injection rule, :data:`~selective_sync.reports.csv.FORMULA_STARTS`) is stored as it is,
as text, with the quote-prefix flag set: what Excel itself stores for ``'=1+1``, so
editing the cell keeps it text. Accuracies are :func:`format_accuracy` (floored) as numbers
with a ``0.00%`` format, so they sort; timestamps are date cells in UTC.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from ..history.entry import HistoryEntry, keys_text
from ..models import DistrictVerification
from ..verification.codec import AccuracyTrend
from ._output import atomic_output, printable
from .csv import FORMULA_STARTS
from .model import (
    NOT_VERIFIED_TEXT,
    OBJECT_COLUMNS,
    TREND_RUN_COLUMN,
    VerificationReport,
    format_accuracy,
    verification_report_from_result,
)

MAX_ROWS = 1_048_576
"""Rows of an Excel sheet, header included; an object with more issue rows continues on
sheets named ``<object> (2)``, ``(3)``..."""
MAX_CELL_CHARS = 32_767
SHEET_NAME_CHARS = 31
TRUNCATED = " [truncated: {} characters]"

SUMMARY_SHEET = "Summary"
DISTRICTS_SHEET = "Districts"
TREND_SHEET = "Trend"
REQUESTS_SHEET = "Requests"
OUTCOMES_SHEET = "Outcomes"

DISTRICT = "District"
DISTRICT_NAME = "District name"
TIMESTAMP = "Timestamp (UTC)"
SUMMARY_COLUMNS = (
    DISTRICT,
    DISTRICT_NAME,
    OBJECT_COLUMNS[0],
    OBJECT_COLUMNS[1],
    TIMESTAMP,
    *OBJECT_COLUMNS[3:],
)
DISTRICTS_COLUMNS = (
    DISTRICT,
    DISTRICT_NAME,
    "Overall Accuracy",
    "Distinct",
    "Errors",
    "Objects",
    "Keys with issues",
)
REQUEST_COLUMNS = (
    "Run id",
    "Run name",
    "Requested (UTC)",
    "Requested by",
    "Status",
    "Completed (UTC)",
    "Object",
    DISTRICT,
    DISTRICT_NAME,
    "Keys requested",
    "Keys",
    "Records succeeded",
    "Records total",
    "Check dependencies",
    "Dry run",
    "Failure",
)
OUTCOME_COLUMNS = ("Key", "Outcome", "Attempts", "Reason", "Parents synced")

# Column kinds: how a column's cells are written.
TEXT, INT, KEY, PERCENT, TIME = "text", "int", "key", "percent", "time"
_MIN_WIDTH, _MAX_WIDTH = 8, 60
_WIDTH_SAMPLE = 5_000
_DATE_FORMAT = "mm/dd/yyyy hh:mm AM/PM"


@dataclass(frozen=True)
class Sheet:
    """One sheet to write: its name, its table and each column's kind."""

    name: str
    frame: pd.DataFrame
    kinds: tuple[str, ...]


# ---------------------------------------------------------------- cell values


def cell_text(value: Any) -> str | None:
    """A text cell's content: one line (as in every report), at most Excel's 32,767
    characters (a longer value says how long it was); None for no value."""
    if type(value) is str and len(value) <= MAX_CELL_CHARS and value.isprintable():
        return value  # the common case, kept cheap: a workbook has a million of these
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = printable(str(value))
    if len(text) > MAX_CELL_CHARS:
        marker = TRUNCATED.format(f"{len(text):,}")
        text = text[: MAX_CELL_CHARS - len(marker)] + marker
    return text


def is_formula_like(text: str) -> bool:
    """Whether a spreadsheet would run ``text`` as a formula if it were typed in."""
    return text.startswith(FORMULA_STARTS)


def accuracy_number(text: str) -> float | None:
    """``99.40%`` (as :func:`format_accuracy` prints it) as 0.994; None for ``-``."""
    if text == NOT_VERIFIED_TEXT:
        return None
    return round(float(text.rstrip("%")) / 100, 6)


def utc_naive(moment: dt.datetime | None) -> dt.datetime | None:
    """A timestamp as the naive UTC date cell a spreadsheet holds (it has no time zones)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def sheet_name(base: str, used: set[str]) -> str:
    """A valid, unused sheet name for ``base`` (Excel: 31 characters, none of ``[]:*?/\\``,
    unique regardless of case)."""
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in printable(base)).strip("'") or "_"
    name, n = clean[:SHEET_NAME_CHARS], 1
    while name.lower() in used:
        n += 1
        suffix = f" ({n})"
        name = clean[: SHEET_NAME_CHARS - len(suffix)] + suffix
    used.add(name.lower())
    return name


# ---------------------------------------------------------------- Verification Summary


def summary_frame(reports: Sequence[VerificationReport]) -> pd.DataFrame:
    """The per-object figures of every district, one row per district and object."""
    rows = [
        (
            r.district_number,
            r.district_name,
            o.object,
            accuracy_number(o.accuracy),
            utc_naive(o.verified_at),
            o.distinct,
            o.at_district,
            o.at_state,
            o.errors,
            o.missing_at_state,
            o.missing_at_district,
            o.mismatched,
        )
        for r in reports
        for o in r.objects
    ]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS), dtype=object)


def districts_frame(reports: Sequence[VerificationReport]) -> pd.DataFrame:
    """Each district's overall figures, aggregated from the per-object rows."""
    objects = pd.DataFrame(
        [
            (r.district_number, r.district_name, o.distinct, o.errors)
            for r in reports
            for o in r.objects
        ],
        columns=[DISTRICT, DISTRICT_NAME, "Distinct", "Errors"],
    )
    totals = (
        objects.groupby([DISTRICT, DISTRICT_NAME], sort=False)
        .agg(Distinct=("Distinct", "sum"), Errors=("Errors", "sum"), Objects=("Errors", "size"))
        .reset_index()
    )
    keys = {r.district_number: r.issue_count for r in reports}
    totals["Overall Accuracy"] = [
        accuracy_number(format_accuracy(int(d), int(e)))
        for d, e in zip(totals["Distinct"], totals["Errors"], strict=True)
    ]
    totals["Keys with issues"] = [keys[int(n)] for n in totals[DISTRICT]]
    # Districts whose summary holds no object still get their row.
    listed = set(totals[DISTRICT].tolist())
    empty = [
        (r.district_number, r.district_name, 0, 0, 0, accuracy_number(format_accuracy(0, 0)), 0)
        for r in reports
        if r.district_number not in listed
    ]
    if empty:
        extra = pd.DataFrame(
            empty,
            columns=[DISTRICT, DISTRICT_NAME, "Distinct", "Errors", "Objects"]
            + ["Overall Accuracy", "Keys with issues"],
        )
        totals = pd.concat([totals, extra], ignore_index=True)
    return totals[list(DISTRICTS_COLUMNS)]


def trend_frame(reports: Sequence[VerificationReport]) -> pd.DataFrame | None:
    """Each district's accuracy over its stored runs, oldest first; None without a trend."""
    charts = [(r, r.trend) for r in reports if r.trend is not None]
    if not charts:
        return None
    objects = list(dict.fromkeys(s.object for _, t in charts for s in t.series))
    rows = []
    for report, chart in charts:
        for i, moment in enumerate(chart.run_moments):
            values = {s.object: accuracy_number(s.texts[i]) for s in chart.series}
            rows.append(
                (report.district_number, report.district_name, utc_naive(moment))
                + tuple(values.get(name) for name in objects)
            )
    columns = [DISTRICT, DISTRICT_NAME, f"{TREND_RUN_COLUMN} (UTC)", *objects]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def issues_frame(report: VerificationReport, index: int, with_district: bool) -> pd.DataFrame:
    """One object's record issues: one row per differing column of each key."""
    issues = report.issues[index]
    columns = list(issues.columns)
    frame = pd.DataFrame(
        [line.typed_cells() for line in issues.lines], columns=columns, dtype=object
    )
    if with_district:
        frame.insert(0, DISTRICT, report.district_number)
    return frame


def verification_sheets(reports: Sequence[VerificationReport]) -> list[Sheet]:
    """The sheets of a Verification Summary workbook (one district, or several for the
    state-wide form): Summary, Districts, Trend (when stored), then one per object."""
    if not reports:
        raise ValueError("a Verification Summary workbook needs at least one district")
    used: set[str] = set()
    summary_kinds = (KEY, TEXT, TEXT, PERCENT, TIME) + (INT,) * 7
    sheets = [
        Sheet(sheet_name(SUMMARY_SHEET, used), summary_frame(reports), summary_kinds),
        Sheet(
            sheet_name(DISTRICTS_SHEET, used),
            districts_frame(reports),
            (KEY, TEXT, PERCENT, INT, INT, INT, INT),
        ),
    ]
    trend = trend_frame(reports)
    if trend is not None:
        kinds = (KEY, TEXT, TIME) + (PERCENT,) * (len(trend.columns) - 3)
        sheets.append(Sheet(sheet_name(TREND_SHEET, used), trend, kinds))
    state_wide = len(reports) > 1
    issue_kinds = ((KEY,) if state_wide else ()) + (KEY, TEXT, TEXT, TEXT, TEXT)
    # One sheet per object, every district's issues of that object together.
    objects = list(dict.fromkeys(o.object for r in reports for o in r.issues))
    for name in objects:
        frames = [
            issues_frame(r, i, state_wide)
            for r in reports
            for i, o in enumerate(r.issues)
            if o.object == name
        ]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        if len({tuple(f.columns) for f in frames}) > 1:
            raise ValueError(f"{name}: the districts' record issues have different columns")
        for part in split_rows(frame):
            sheets.append(Sheet(sheet_name(name, used), part, issue_kinds))
    return sheets


def split_rows(frame: pd.DataFrame, max_rows: int = MAX_ROWS) -> list[pd.DataFrame]:
    """``frame`` in parts that fit a sheet (``max_rows`` rows, header included); an empty
    frame is one part (its sheet shows the header)."""
    per_sheet = max_rows - 1
    if len(frame) <= per_sheet:
        return [frame]
    return [frame.iloc[i : i + per_sheet] for i in range(0, len(frame), per_sheet)]


def write_verification_xlsx(
    reports: VerificationReport | Sequence[VerificationReport], path: str | os.PathLike[str]
) -> Path:
    """Write the Verification Summary workbook of one district, or of several districts
    (the state-wide form, every district in the order given), to ``path`` atomically."""
    if isinstance(reports, VerificationReport):
        reports = [reports]
    reports = list(reports)
    sheets = verification_sheets(reports)
    first = reports[0]
    subject = first.district_line if len(reports) == 1 else f"{len(reports)} districts"
    properties = {
        "title": first.title,
        "subject": subject,
        "comments": first.generated_line,
        "created": utc_naive(first.generated_at),
    }
    return write_workbook(sheets, path, properties)


def write_state_xlsx(
    results: Sequence[DistrictVerification],
    path: str | os.PathLike[str],
    trends: Mapping[int, AccuracyTrend] | None = None,
    generated_at: dt.datetime | None = None,
) -> Path:
    """The state-wide workbook of several districts' Verification Summaries (each with its
    stored trend when ``trends`` has it, by district number), districts in the order given."""
    if not results:
        raise ValueError("a state-wide workbook needs at least one district")
    numbers = [r.district_number for r in results]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"a district is given twice: {numbers}")
    moment = generated_at or dt.datetime.now(dt.UTC)
    reports = [
        verification_report_from_result(r, moment, (trends or {}).get(r.district_number))
        for r in results
    ]
    return write_verification_xlsx(reports, path)


# ---------------------------------------------------------------- Sync History


def requests_frame(entries: Sequence[HistoryEntry]) -> pd.DataFrame:
    """The Sync History requests, one row each, in the order given."""
    rows = [
        (
            e.run_id,
            e.run_name,
            utc_naive(e.requested_at),
            e.requested_by,
            e.status,
            utc_naive(e.completed_at),
            e.object,
            e.district,
            e.district_name,
            len(e.keys),
            keys_text(e.keys, shown=50),
            e.records_succeeded,
            e.records_total,
            "yes" if e.check_dependencies else "no",
            "yes" if e.dry_run else "no",
            e.failure,
        )
        for e in entries
    ]
    return pd.DataFrame(rows, columns=list(REQUEST_COLUMNS), dtype=object)


def outcomes_frame(entry: HistoryEntry) -> pd.DataFrame:
    """Every key's outcome of one request, in the order recorded."""
    rows = [
        (k.key, k.outcome.value, k.attempts, k.reason, ", ".join(k.parents_synced))
        for k in entry.outcomes or ()
    ]
    return pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS), dtype=object)


def write_history_xlsx(
    entries: Sequence[HistoryEntry],
    path: str | os.PathLike[str],
    outcomes_of: HistoryEntry | None = None,
    generated_at: dt.datetime | None = None,
) -> Path:
    """Write the Sync History workbook: a Requests sheet (one row per entry) and, with
    ``outcomes_of``, an Outcomes sheet of that request's per-key outcomes."""
    used: set[str] = set()
    request_kinds = (TEXT, TEXT, TIME, TEXT, TEXT, TIME, TEXT, KEY, TEXT, INT, TEXT)
    request_kinds += (INT, INT, TEXT, TEXT, TEXT)
    sheets = [Sheet(sheet_name(REQUESTS_SHEET, used), requests_frame(entries), request_kinds)]
    subject = "Sync History"
    if outcomes_of is not None:
        frame = outcomes_frame(outcomes_of)
        for part in split_rows(frame):
            sheets.append(
                Sheet(sheet_name(OUTCOMES_SHEET, used), part, (KEY, TEXT, INT, TEXT, TEXT))
            )
        subject = f"Sync History entry {outcomes_of.run_id} ({outcomes_of.run_name})"
    moment = generated_at or dt.datetime.now(dt.UTC)
    properties = {"title": "Sync History", "subject": subject, "created": utc_naive(moment)}
    return write_workbook(sheets, path, properties)


# ---------------------------------------------------------------- writing


class _Formats:
    """The few cell formats every workbook uses."""

    def __init__(self, book: xlsxwriter.Workbook) -> None:
        self.header = book.add_format({"bold": True, "bottom": 1, "text_wrap": False})
        self.text = book.add_format({"num_format": "@"})
        self.quoted = book.add_format({"num_format": "@", "quote_prefix": True})
        self.percent = book.add_format({"num_format": "0.00%"})
        self.time = book.add_format({"num_format": _DATE_FORMAT})
        self.int = book.add_format({"num_format": "#,##0"})
        self.key = book.add_format({"num_format": "0"})


def _writer(ws: Worksheet, kind: str, formats: _Formats) -> Callable[[int, int, Any], None]:
    """How one column's cells are written (None and NaN leave the cell empty)."""
    if kind == TEXT:

        def text(row: int, col: int, value: Any) -> None:
            content = cell_text(value)
            if not content:
                return
            if content.startswith(FORMULA_STARTS):
                ws.write_string(row, col, content, formats.quoted)
            else:
                ws.write_string(row, col, content)  # the column's text format applies

        return text

    def number(row: int, col: int, value: Any) -> None:
        if value is None or (isinstance(value, float) and value != value):
            return
        if kind == TIME:
            ws.write_datetime(row, col, value)
        else:
            ws.write_number(row, col, value)

    return number


def _width(header: str, values: pd.Series, kind: str) -> float:
    """A column width that shows the header and typical values, within bounds."""
    if kind == TIME:
        longest = 19
    elif kind == PERCENT:
        longest = 8
    elif len(values) == 0:
        longest = 0
    else:
        # The 99th percentile of a sample, not the maximum: one long reason must not make
        # every column of the sheet a screen wide (and 100,000 rows need not all be read).
        sample = (
            values if len(values) <= _WIDTH_SAMPLE else values.sample(_WIDTH_SAMPLE, random_state=0)
        )
        lengths = sample.map(lambda v: 0 if v is None else len(str(v)))
        longest = int(lengths.quantile(0.99, interpolation="higher"))
    return float(min(max(len(header) + 3, longest + 2, _MIN_WIDTH), _MAX_WIDTH))


def _column_format(kind: str, formats: _Formats) -> Format:
    # Keys and district numbers print without thousands separators, counts with them.
    return {
        TEXT: formats.text,
        PERCENT: formats.percent,
        TIME: formats.time,
        KEY: formats.key,
        INT: formats.int,
    }[kind]


def _write_sheet(book: xlsxwriter.Workbook, sheet: Sheet, formats: _Formats) -> None:
    ws = book.add_worksheet(sheet.name)
    frame, kinds = sheet.frame, sheet.kinds
    if len(kinds) != len(frame.columns):
        raise ValueError(f"sheet {sheet.name}: {len(frame.columns)} columns, {len(kinds)} kinds")
    for col, (header, kind) in enumerate(zip(frame.columns, kinds, strict=True)):
        width = _width(str(header), frame[header], kind)
        ws.set_column(col, col, width, _column_format(kind, formats))
    # Constant-memory mode writes rows in order: the header, then the table.
    for col, header in enumerate(frame.columns):
        ws.write_string(0, col, cell_text(header) or "", formats.header)
    writers = [_writer(ws, kind, formats) for kind in kinds]
    for row, values in enumerate(frame.itertuples(index=False, name=None), start=1):
        for col, (write, value) in enumerate(zip(writers, values, strict=True)):
            write(row, col, value)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(len(frame), 1), len(frame.columns) - 1)


def write_workbook(
    sheets: Sequence[Sheet], path: str | os.PathLike[str], properties: dict[str, Any]
) -> Path:
    """Write ``sheets`` as one workbook to ``path`` atomically (a reader never sees half)."""
    with atomic_output(path) as fh:
        options = {
            "constant_memory": True,
            # Belt and braces: only write_string is called for text, but nothing may ever
            # turn a value into a formula, a number or a link.
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
            "in_memory": False,
        }
        book = xlsxwriter.Workbook(fh, options)
        try:
            book.set_properties({k: v for k, v in properties.items() if v is not None})
            formats = _Formats(book)
            for sheet in sheets:
                _write_sheet(book, sheet, formats)
        finally:
            book.close()
    return Path(path)
