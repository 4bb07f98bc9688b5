"""The record issues of a Verification Summary as CSV (one line per differing column)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ._output import atomic_output
from .model import VerificationReport

CSV_COLUMNS = ("object", "key", "issue", "column", "district_value", "state_value")

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Google
# Sheets (CSV/formula injection); OWASP's advice is to prefix it with a single quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """``cell`` safe to open in a spreadsheet: a leading ``'`` when it could be a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def verification_csv(report: VerificationReport) -> str:
    """The record issues as CSV text (RFC 4180 quoting, CRLF line ends), header first.

    Values are printed literally, as in the PDF and DOCX (NULL for a missing value),
    except that a value a spreadsheet would run as a formula gets a leading ``'``.
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for obj in report.issues:
        for line in obj.lines:
            writer.writerow((obj.object, *map(neutralise, line.cells())))
    return buf.getvalue()


def write_verification_csv(report: VerificationReport, path: str | os.PathLike[str]) -> Path:
    """Write :func:`verification_csv` to ``path`` (UTF-8) atomically."""
    with atomic_output(path) as fh:
        fh.write(verification_csv(report).encode("utf-8"))
    return Path(path)
