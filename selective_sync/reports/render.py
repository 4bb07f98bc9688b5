"""One entry point for every report format, for the CLI, the flows and the report server."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInput
from .csv import write_verification_csv
from .docx import render_docx
from .model import SyncReport, VerificationReport
from .pdf import render_pdf

REPORT_FORMATS = ("pdf", "docx", "csv", "xlsx")
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def report_format(fmt: str) -> str:
    """``fmt`` normalised (``PDF``, ``.docx`` accepted); BadInput names the choices."""
    name = str(fmt).strip().lower().lstrip(".")
    if name not in REPORT_FORMATS:
        raise BadInput(f"unknown report format {fmt!r}: choose one of {', '.join(REPORT_FORMATS)}")
    return name


def render_report(
    report: SyncReport | VerificationReport, path: str | os.PathLike[str], fmt: str
) -> Path:
    """Write ``report`` to ``path`` as ``fmt`` (pdf, docx, or csv and xlsx for a
    Verification Summary); BadInput before any work for a bad format or path."""
    name = report_format(fmt)
    if getattr(report, "is_state_report", False):
        from .state import render_state_report

        return render_state_report(report, path, name)
    if name == "pdf":
        return render_pdf(report, path)
    if name == "docx":
        return render_docx(report, path)
    if not isinstance(report, VerificationReport):
        if name == "xlsx":
            raise BadInput(
                "the Sync History workbook is made from the history: "
                "selective-sync report RUN -o FILE.xlsx, or history list --report xlsx"
            )
        raise BadInput("csv is available for the Verification Summary only: choose pdf or docx")
    if name == "xlsx":
        # Imported here: pandas costs a second, and most reports never need it.
        from .xlsx import write_verification_xlsx

        return write_verification_xlsx(report, path)
    return write_verification_csv(report, path)
