"""The state's Verification Summary report: every district worst first, then each
district's objects, with the state's accuracy over time. PDF and DOCX, same content.

Built from ``selective_sync.verification.state.StateSummary`` (stored figures; no record
issues: each district's own report lists those). Accuracy goes through the one floor
formatter, ``format_accuracy``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from selective_sync.text import format_timestamp
from selective_sync.verification.codec import AccuracyTrend
from selective_sync.verification.state import STATE_COLUMNS, StateSummary, state_rows

from ._output import atomic_output, printable
from .model import (
    OBJECT_COLUMNS,
    VERIFICATION_TITLE,
    ObjectRow,
    TrendChart,
    format_accuracy,
    trend_chart,
)

STATE_LINE = "State view: every district"
NOT_VERIFIED = "Not verified yet: no stored results."


@dataclass(frozen=True)
class DistrictSection:
    heading: str
    overall: str
    objects: tuple[ObjectRow, ...]


@dataclass
class StateReport:
    """The state's Verification Summary as both renderers print it."""

    generated_at: dt.datetime
    overall_accuracy: str
    rows: list[tuple[str, ...]]
    sections: list[DistrictSection]
    trend: TrendChart | None = None

    title = f"{VERIFICATION_TITLE}: all districts"
    landscape = True
    is_state_report = True
    columns = STATE_COLUMNS
    object_columns = OBJECT_COLUMNS

    @property
    def district_line(self) -> str:
        return STATE_LINE

    @property
    def generated_line(self) -> str:
        return f"Generated on {format_timestamp(self.generated_at)}"

    @property
    def intro(self) -> str:
        return (
            f"{len(self.rows):,} districts, worst overall accuracy first; state overall "
            f"accuracy {self.overall_accuracy}."
        )


def state_report(
    summary: StateSummary, generated_at: dt.datetime, trend: AccuracyTrend | None = None
) -> StateReport:
    """The report content of the state's view (``trend``: the state's, see state_trend)."""
    table = state_rows(summary, format_accuracy, format_timestamp)
    sections = []
    for d in summary.districts:
        objects = tuple(
            ObjectRow(
                object=o.object,
                accuracy=format_accuracy(o.distinct, o.errors),
                timestamp=format_timestamp(o.verified_at),
                distinct=o.distinct,
                at_district=o.at_district,
                at_state=o.at_state,
                errors=o.errors,
                missing_at_state=o.missing_at_state,
                missing_at_district=o.missing_at_district,
                mismatched=o.mismatched,
            )
            for o in d.objects
        )
        overall = format_accuracy(d.distinct, d.errors) if d.verified else NOT_VERIFIED
        sections.append(DistrictSection(f"{d.number} {d.name}", overall, objects))
    return StateReport(
        generated_at=generated_at,
        overall_accuracy=format_accuracy(summary.distinct, summary.errors),
        rows=[tuple(str(v) for v in r.values()) for r in table],
        sections=sections,
        trend=trend_chart(trend),
    )


def render_state_pdf(report: StateReport, path: str | os.PathLike[str]) -> Path:
    """Write the state's report as a PDF (the Verification Summary's template set)."""
    from .pdf import _WEASYPRINT_LOCK, TEMPLATES, _environment, trend_svg

    with atomic_output(path) as fh:
        html = (
            _environment()
            .get_template("state_report.html.j2")
            .render(r=report, chart=trend_svg(report.trend) if report.trend else None)
        )
        from weasyprint import HTML

        with _WEASYPRINT_LOCK:
            HTML(string=html, base_url=str(TEMPLATES)).write_pdf(fh)
    return Path(path)


def render_state_docx(report: StateReport, path: str | os.PathLike[str]) -> Path:
    """Write the state's report as a DOCX, in the same order as the PDF."""
    from docx import Document

    from .docx import _append, _content_width, _para, _setup, _split, _table

    with atomic_output(path) as fh:
        doc = Document()
        _setup(doc, report)
        doc.add_heading(printable(report.title), level=1)
        _para(doc, report.intro)
        total = _content_width(doc)
        _append(doc, _table(_split(total, [2, 4, 2, 2, 4, 4]), report.rows, report.columns))
        if report.trend is not None:
            chart = report.trend
            doc.add_heading(printable(chart.heading), level=2)
            shares = [3] + [2] * len(chart.series)
            _append(doc, _table(_split(total, shares), chart.rows(), chart.columns))
        shares = [3, 2, 4, 2, 2, 2, 2, 2, 2, 2]
        for section in report.sections:
            doc.add_heading(printable(section.heading), level=2)
            _para(doc, f"Overall accuracy: {section.overall}")
            if section.objects:
                rows = [o.cells() for o in section.objects]
                _append(doc, _table(_split(total, shares), rows, report.object_columns))
        doc.add_paragraph()
        doc.save(fh)
    return Path(path)


def render_state_report(report: StateReport, path: str | os.PathLike[str], fmt: str) -> Path:
    """The state's report as ``fmt`` (pdf or docx)."""
    from ..errors import BadInput
    from .render import report_format

    name = report_format(fmt)
    if name == "pdf":
        return render_state_pdf(report, path)
    if name == "docx":
        return render_state_docx(report, path)
    raise BadInput("the state's Verification Summary is available as pdf or docx")
