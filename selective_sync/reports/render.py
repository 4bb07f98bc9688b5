"""One entry point for every report format, for the CLI, the flows and the report server."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInput
from .csv import write_verification_csv
from .docx import render_docx
from .model import SyncReport, VerificationReport
from .pdf import render_pdf

REPORT_FORMATS = ("pdf", "docx", "csv")
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "csv": "text/csv; charset=utf-8",
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
    """Write ``report`` to ``path`` as ``fmt`` (pdf, docx, or csv for a Verification
    Summary's record issues); BadInput before any work for a bad format or path."""
    name = report_format(fmt)
    if getattr(report, "is_state_report", False):
        from .state import render_state_report

        return render_state_report(report, path, name)
    if name == "pdf":
        return render_pdf(report, path)
    if name == "docx":
        return render_docx(report, path)
    if not isinstance(report, VerificationReport):
        raise BadInput("csv is available for the Verification Summary only: choose pdf or docx")
    return write_verification_csv(report, path)
