"""How text is shown to people: timestamps, accuracy, one-line error messages, markdown cells.

One place for each, so the history, the reports, the artifacts, the logs and the CLI agree.
"""

from __future__ import annotations

import datetime as dt
import re

TIMESTAMP_FORMAT = "%m/%d/%Y %I:%M %p UTC"

# Characters that would turn text in a markdown table cell into markup (or end the cell).
_MD_ACTIVE = re.compile(r"([\\`*_\[\]<>|~&])")


def format_timestamp(value: dt.datetime | None) -> str:
    """``11/28/2026 08:15 PM UTC``; a naive datetime is taken to be UTC already."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime(TIMESTAMP_FORMAT)


def accuracy_hundredths(distinct: int, errors: int) -> int:
    """Accuracy in hundredths of a percent, rounded *down* with integer arithmetic.

    1 error in 30,000 keys is 9,999 (99.99%), never a 100.00% that hides an error, and no
    float artefact (0.29 * 100 = 28.999...) moves a figure. 10,000 when Distinct is 0.
    """
    if distinct <= 0:
        return 10_000
    return max(distinct - errors, 0) * 10_000 // distinct


def format_accuracy(distinct: int, errors: int) -> str:
    """Accuracy as every output prints it: ``99.99%`` (two decimals, rounded down)."""
    hundredths = accuracy_hundredths(distinct, errors)
    return f"{hundredths // 100}.{hundredths % 100:02d}%"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, without a driver's SQL echo.

    A SQLAlchemy error carries the driver's own error as ``orig`` and a transient fault its
    cause as ``cause``: their message is the one that names the problem.
    """
    inner: BaseException = exc
    for _ in range(3):  # a fault wrapping a SQLAlchemy error wrapping the driver's error
        nested = getattr(inner, "orig", None) or getattr(inner, "cause", None)
        if not isinstance(nested, BaseException):
            break
        inner = nested
    lines = str(inner).strip().splitlines()
    text = lines[0].strip() if lines else ""
    return text or type(inner).__name__


def md_escape(text: object) -> str:
    """``text`` for a markdown table cell or description, shown literally (one line)."""
    # User-supplied text (names, reasons): a pipe or a newline would break the table, and
    # * _ < [ ... would become markup in the UI.
    return _MD_ACTIVE.sub(r"\\\1", str(text).replace("\r", " ").replace("\n", " "))
