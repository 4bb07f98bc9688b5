"""The record issues of a Verification Summary as CSV (one line per differing column)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ._output import atomic_output
from .model import VerificationReport

CSV_COLUMNS = ("object", "key", "issue", "column", "district_value", "state_value")


def verification_csv(report: VerificationReport) -> str:
    """The record issues as CSV text (RFC 4180 quoting, CRLF line ends), header first.

    Values are printed literally, as in the PDF and DOCX (NULL for a missing value).
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for obj in report.issues:
        for line in obj.lines:
            writer.writerow((obj.object, *line.cells()))
    return buf.getvalue()


def write_verification_csv(report: VerificationReport, path: str | os.PathLike[str]) -> Path:
    """Write :func:`verification_csv` to ``path`` (UTF-8) atomically."""
    with atomic_output(path) as fh:
        fh.write(verification_csv(report).encode("utf-8"))
    return Path(path)
