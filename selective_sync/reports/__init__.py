"""Sync Request History and Verification Summary reports: content models and renderers.

Plain Python (no Prefect): the flows, the CLI and the tests share it. Renderers take the
content models only; they never query a database.
"""

from .csv import verification_csv, write_verification_csv
from .docx import render_docx
from .model import (
    SyncReport,
    VerificationReport,
    format_accuracy,
    format_timestamp,
    sync_report_from_result,
    verification_report_from_result,
)
from .pdf import render_pdf
from .render import MEDIA_TYPES, REPORT_FORMATS, render_report, report_format

__all__ = [
    "MEDIA_TYPES",
    "REPORT_FORMATS",
    "SyncReport",
    "VerificationReport",
    "format_accuracy",
    "format_timestamp",
    "render_docx",
    "render_pdf",
    "render_report",
    "report_format",
    "sync_report_from_result",
    "verification_csv",
    "verification_report_from_result",
    "write_verification_csv",
]
