"""The one timestamp format shown to people (history, reports, CLI)."""

from __future__ import annotations

import datetime as dt

TIMESTAMP_FORMAT = "%m/%d/%Y %I:%M %p UTC"


def format_timestamp(value: dt.datetime | None) -> str:
    """``11/28/2026 08:15 PM UTC``; a naive datetime is taken to be UTC already."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime(TIMESTAMP_FORMAT)
