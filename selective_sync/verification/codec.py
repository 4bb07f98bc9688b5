"""The stored Verification Summary: a pure codec between results and stored payloads.

The record is the state database (``records``: one summary row per district, object and
run, and that result's record issues in chunks, both as encoded here). Each
``verification-summary`` run also shows the summary as keyed Prefect artifacts, the UI's
view (``flows/verification_store.py`` does the API calls; this module never imports
Prefect):

- ``verification-summary-<district>``: a small table, one row per object: the figures
  the product shows, the object's own ``verified_at`` and the id of the run whose issue
  artifacts hold its record issues. Every run writes the whole summary (merged: objects it
  did not verify keep their row, timestamp and issue reference), so older versions are the
  accuracy history. Two runs at once may each write a version that lacks the other's
  results (each merged what was stored when it read), so the current summary is read, not
  taken from one version: per object, the row with the newest ``verified_at`` (in the
  database, or, for summaries stored as artifacts before the database held them, among the
  latest version and every version stored since its run read: :func:`read_back_from`,
  :func:`newest_rows`). A run that finds the latest version differing from that reading
  stores the reading as a new version, attached to no run, so the UI shows it too.
- ``verification-issues-<district>``: the record issues of the objects a run verified, one
  table row per printed issue line (a mismatch has one row per differing column; a list
  of row objects, which both Prefect UIs show as a real table; the values print as they
  are and a ``*_type`` column names the type of a date, decimal, ... value), in
  chunks of at most ``CHUNK_BYTES``. Prefect puts a keyed artifact's data into an event
  and refuses events over 1.5 MB (the artifact is stored, the event dropped): chunks keep
  every event well under that, whatever the drift. An object's rows never share a chunk
  with another object's, and ``n`` (the issue's number within its object) orders them.

Decoding gives back exactly what was encoded: the key lists are the issues' keys by kind
(in issue order, as verification builds them), and compared values keep their types
(JSON's own, or tagged for dates, decimals, bytes and non-finite floats).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from selective_sync.errors import StoredSummaryError
from selective_sync.models import (
    ISSUE_KINDS,
    ColumnDiff,
    DistrictVerification,
    ObjectVerification,
    RecordIssue,
    accuracy,
)
from selective_sync.registry import object_names
from selective_sync.text import format_accuracy, md_escape

FORMAT = 1
"""Version of the row layout; a row of another version is refused, not misread."""

CHUNK_BYTES = 1_000_000
"""Budget of one issues chunk, counted as the bytes it takes inside Prefect's event
(the table's JSON text, JSON-escaped once more): 1.5 MB is Prefect's event limit."""

ISSUE_COLUMNS = ("object", "n", "key", "issue", "column", "district_value", "state_value")
# A stored row's columns, in the order the UI shows them; the *_type columns are empty
# for JSON's own types.
ROW_COLUMNS = (
    "object",
    "key",
    "issue",
    "column",
    "district_value",
    "state_value",
    "n",
    "district_type",
    "state_type",
)

_SUMMARY_INT_FIELDS = (
    "distinct",
    "at_district",
    "at_state",
    "errors",
    "missing_at_state",
    "missing_at_district",
    "mismatched",
    "issue_rows",
)


def summary_key(district: int) -> str:
    """Artifact key of the district's stored summary (lowercase, digits and dashes)."""
    return f"verification-summary-{int(district)}"


def issues_key(district: int) -> str:
    """Artifact key of the district's stored record issues."""
    return f"verification-issues-{int(district)}"


# ---------------------------------------------------------------- compared values


def encode_value(value: Any) -> Any:
    """A compared value as JSON: JSON's own types as they are, others tagged."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"type": "float", "value": repr(value)}
    # datetime before date: a datetime is a date too.
    for kind, cls in (("datetime", dt.datetime), ("date", dt.date), ("time", dt.time)):
        if isinstance(value, cls):
            return {"type": kind, "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"type": "bytes", "value": bytes(value).hex()}
    raise TypeError(f"cannot store a compared value of type {type(value).__name__}")


_DECODERS = {
    "float": float,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": Decimal,
    "bytes": bytes.fromhex,
}


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if isinstance(value, dict):
        try:
            return _DECODERS[value["type"]](value["value"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoredSummaryError(f"a stored compared value does not decode: {value!r}") from exc
    return value


# ---------------------------------------------------------------- record issues


@dataclass(frozen=True)
class IssueChunk:
    """One ``verification-issues`` artifact: a table (list of row objects) of one object's
    rows."""

    object: str
    part: int
    parts: int
    table: list[dict[str, Any]]
    size_bytes: int

    @property
    def rows(self) -> int:
        return len(self.table)

    @property
    def description(self) -> str:
        return f"Record issues of {self.object}, part {self.part} of {self.parts}"


def _issue_rows(o: ObjectVerification) -> Iterable[list[list[Any]]]:
    """Each issue's rows (one per differing column; one for an issue without columns)."""
    for n, issue in enumerate(o.issues, start=1):
        if not issue.diffs:
            yield [[o.object, n, issue.key, issue.issue, None, None, None]]
            continue
        yield [
            [
                o.object,
                n,
                issue.key,
                issue.issue,
                d.column,
                encode_value(d.district),
                encode_value(d.state),
            ]
            for d in issue.diffs
        ]


def _row_object(row: list[Any]) -> dict[str, Any]:
    """A row as the stored table holds it: a tagged value splits into its text and type."""
    values = dict(zip(ISSUE_COLUMNS, row, strict=True))
    stored = {name: values.get(name) for name in ROW_COLUMNS}
    for side in ("district", "state"):
        value = values[f"{side}_value"]
        tagged = isinstance(value, dict)
        stored[f"{side}_value"] = value["value"] if tagged else value
        stored[f"{side}_type"] = value["type"] if tagged else ""
    return stored


def _row_values(row: Mapping[str, Any]) -> list[Any]:
    """The inverse of :func:`_row_object` (``n`` first, as the decoder sorts by it)."""

    def value(side: str) -> Any:
        kind = row[f"{side}_type"]
        return {"type": kind, "value": row[f"{side}_value"]} if kind else row[f"{side}_value"]

    return [row["n"], row["key"], row["issue"], row["column"], value("district"), value("state")]


def _event_bytes(row: dict[str, Any]) -> int:
    # The row's JSON, plus one byte per character the event's second JSON escaping adds.
    text = json.dumps(row)
    return len(text) + text.count('"') + text.count("\\") + 2  # ", " / ": " separators


def _check_key_lists(o: ObjectVerification) -> None:
    for kind in ISSUE_KINDS:
        if getattr(o, kind) != [i.key for i in o.issues if i.issue == kind]:
            raise ValueError(
                f"{o.object}: the {kind} keys are not those of its record issues; "
                "only results with every issue listed can be stored"
            )


def issue_chunks(o: ObjectVerification, max_bytes: int = CHUNK_BYTES) -> list[IssueChunk]:
    """One object's record issues as artifact tables of at most ``max_bytes`` each.

    An issue's rows always stay in one chunk. An object without issues gets no chunk.
    """
    _check_key_lists(o)
    # The column names and brackets every chunk has, however few its rows.
    overhead = len(json.dumps(json.dumps([])))
    groups: list[list[list[dict[str, Any]]]] = [[]]
    used = overhead
    for issue_rows in _issue_rows(o):
        rows = [_row_object(r) for r in issue_rows]
        size = sum(_event_bytes(r) for r in rows)
        if groups[-1] and used + size > max_bytes:
            groups.append([])
            used = overhead
        groups[-1].append(rows)
        used += size
    if not groups[-1]:
        return []
    chunks = []
    for part, group in enumerate(groups, start=1):
        table = [row for rows in group for row in rows]
        size = len(json.dumps(json.dumps(table)))
        chunks.append(IssueChunk(o.object, part, len(groups), table, size))
    return chunks


def _issues_from_rows(rows: list[tuple[Any, ...]]) -> list[RecordIssue]:
    """Record issues from one object's rows (``n``, key, issue, column, district, state)."""
    rows.sort(key=lambda r: r[0])  # stable: an issue's diffs keep their order
    issues: list[RecordIssue] = []
    current: tuple[int, int, str] | None = None
    diffs: list[ColumnDiff] = []

    def flush() -> None:
        if current is not None:
            issues.append(RecordIssue(current[1], current[2], tuple(diffs)))  # type: ignore[arg-type]

    for n, key, issue, column, district, state in rows:
        if current is None or n != current[0]:
            flush()
            current, diffs = (n, key, issue), []
        if column is not None:
            diffs.append(ColumnDiff(column, decode_value(district), decode_value(state)))
    flush()
    return issues


def issues_by_object(tables: Iterable[Any]) -> dict[str, list[RecordIssue]]:
    """Decode any number of issue tables (chunks of one or several runs, in any order).

    A table is a list of row objects; a dict of columns is the layout stored before the
    UI showed it as a table, still read."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table in tables:
        if isinstance(table, list):
            try:
                for row in table:
                    rows.setdefault(row["object"], []).append(tuple(_row_values(row)))
            except (KeyError, TypeError) as exc:
                raise StoredSummaryError("a stored record-issues row lacks its columns") from exc
            continue
        try:
            columns = [table[name] for name in ISSUE_COLUMNS]
        except (KeyError, TypeError) as exc:
            raise StoredSummaryError("a stored record-issues table lacks its columns") from exc
        if len({len(c) for c in columns}) != 1:
            raise StoredSummaryError("a stored record-issues table has ragged columns")
        for obj, *rest in zip(*columns, strict=True):
            rows.setdefault(obj, []).append(tuple(rest))
    return {obj: _issues_from_rows(r) for obj, r in rows.items()}


# ---------------------------------------------------------------- the summary table


def summary_row(
    district: DistrictVerification, o: ObjectVerification, issues_run: str
) -> dict[str, Any]:
    """One object's row of the summary table; ``issues_run`` holds its issue chunks."""
    return {
        "object": o.object,
        "accuracy": format_accuracy(o.distinct, o.errors),
        "verified_at": o.verified_at.isoformat(),
        "distinct": o.distinct,
        "at_district": o.at_district,
        "at_state": o.at_state,
        "errors": o.errors,
        "missing_at_state": len(o.missing_at_state),
        "missing_at_district": len(o.missing_at_district),
        "mismatched": len(o.mismatched),
        "keys_requested": o.keys_requested,
        "district": district.district_number,
        "district_name": district.district_name,
        "issues_run": issues_run,
        "issue_rows": sum(max(len(i.diffs), 1) for i in o.issues),
        "format": FORMAT,
    }


def rows_counts(rows: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Distinct and Errors over a stored summary's rows."""
    return sum(int(r["distinct"]) for r in rows), sum(int(r["errors"]) for r in rows)


def rows_accuracy(rows: Sequence[Mapping[str, Any]]) -> float:
    """The overall accuracy of a stored summary's rows."""
    return accuracy(*rows_counts(rows))


def summary_description(
    district_name: str, district: int, rows: Sequence[Mapping[str, Any]]
) -> str:
    """The summary artifact's description (markdown in the UI: the name prints literally)."""
    return (
        f"Verification Summary of district {district} {md_escape(district_name)}: "
        f"overall accuracy {format_accuracy(*rows_counts(rows))}"
    )


def check_rows(rows: Any) -> list[dict[str, Any]]:
    """The rows of a stored summary table, checked; StoredSummaryError otherwise."""
    if isinstance(rows, str):
        try:
            rows = json.loads(rows)
        except ValueError as exc:
            raise StoredSummaryError("a stored summary is not JSON") from exc
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise StoredSummaryError("a stored summary does not hold a list of rows")
    for row in rows:
        if row.get("format") != FORMAT:
            raise StoredSummaryError(
                f"a stored summary has format {row.get('format')!r}, expected {FORMAT}"
            )
        missing = [
            name
            for name in ("object", "verified_at", "district", "district_name", "issues_run")
            + _SUMMARY_INT_FIELDS
            if name not in row
        ]
        if missing:
            raise StoredSummaryError(f"a stored summary row lacks {', '.join(missing)}")
    return rows


def merge_rows(
    previous: Sequence[Mapping[str, Any]] | None, fresh: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The summary a run stores: ``fresh`` rows replace the same objects' rows, the other
    objects keep theirs; registry order, objects no longer registered last.

    A fresh row replaces even a newer one (another run verified the object since this run
    did): each run's own version keeps every result it verified, for the trend, and
    :func:`newest_rows` decides on reading."""
    by_object = {r["object"]: dict(r) for r in previous or ()}
    by_object.update((r["object"], dict(r)) for r in fresh)
    if fresh:
        # The district's name as configured now, on every row.
        for row in by_object.values():
            row["district_name"] = fresh[0]["district_name"]
    return _registry_order(by_object)


def _registry_order(by_object: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    order = {name: i for i, name in enumerate(object_names())}
    names = sorted(by_object, key=lambda name: order.get(name, len(order)))
    return [by_object[name] for name in names]


READ_BACK_MARGIN = dt.timedelta(minutes=10)
"""How much earlier than a version's own results the versions stored around it are read:
covers the clocks of the flow (``verified_at``) and of the API (an artifact's ``created``)
disagreeing, and an artifact's write taking a while to commit."""


def _verified_at(row: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(row["verified_at"])


def read_back_from(rows: Any, run_id: Any) -> dt.datetime:
    """The earliest creation time of a stored version that ``rows`` (a version stored by run
    ``run_id``, None for a version attached to no run) may not reflect.

    A run verifies its objects, reads the current summary, then stores it with its own rows
    in place: every version stored before that read is reflected (its rows, or newer ones),
    except where the run's own rows replaced newer ones, which were stored after the run
    verified. So every version the reading must add was created after the run's earliest own
    ``verified_at``; a version attached to no run (see :func:`newest_rows`) is the reading
    itself, complete up to its newest ``verified_at``. ``READ_BACK_MARGIN`` earlier again.
    """
    checked = check_rows(rows)
    own = [
        _verified_at(r) for r in checked if run_id is not None and r["issues_run"] == str(run_id)
    ]
    start = min(own) if own else max(_verified_at(r) for r in checked)
    return start - READ_BACK_MARGIN


def newest_rows(versions: Iterable[Any]) -> list[dict[str, Any]]:
    """The current summary from stored versions given newest first: per object, the row
    with the newest ``verified_at`` (on a tie, the newer version's); the district's name
    from the newest version; registry order."""
    by_object: dict[str, dict[str, Any]] = {}
    name: str | None = None
    for version in versions:
        for row in check_rows(version):
            if name is None:
                name = str(row["district_name"])
            kept = by_object.get(row["object"])
            if kept is None or _verified_at(row) > _verified_at(kept):
                by_object[row["object"]] = dict(row)
    for row in by_object.values():
        row["district_name"] = name
    return _registry_order(by_object)


def object_from_row(row: Mapping[str, Any], issues: list[RecordIssue]) -> ObjectVerification:
    """One stored object, its key lists rebuilt from its issues (checked against the counts)."""
    rows_found = sum(max(len(i.diffs), 1) for i in issues)
    if rows_found != row["issue_rows"]:
        raise StoredSummaryError(
            f"the stored record issues of {row['object']} are incomplete: {rows_found} of "
            f"{row['issue_rows']} rows found (run {row['issues_run']})"
        )
    lists = {kind: [i.key for i in issues if i.issue == kind] for kind in ISSUE_KINDS}
    o = ObjectVerification(
        object=row["object"],
        district_number=int(row["district"]),
        verified_at=dt.datetime.fromisoformat(row["verified_at"]),
        at_district=int(row["at_district"]),
        at_state=int(row["at_state"]),
        issues=issues,
        keys_requested=row.get("keys_requested"),
        **lists,
    )
    if (o.errors, o.distinct) != (row["errors"], row["distinct"]):
        raise StoredSummaryError(f"the stored figures of {row['object']} do not add up")
    return o


def summary_from_rows(
    rows: Sequence[Mapping[str, Any]], issues: Mapping[str, list[RecordIssue]]
) -> DistrictVerification:
    """The stored summary from its rows and every object's decoded issues."""
    objects = [object_from_row(r, issues.get(r["object"], [])) for r in rows]
    return DistrictVerification(
        district_number=int(rows[0]["district"]),
        district_name=str(rows[0]["district_name"]),
        objects=objects,
    )


def encode_summary(
    summary: DistrictVerification, run_id: str, max_bytes: int = CHUNK_BYTES
) -> tuple[list[dict[str, Any]], list[IssueChunk]]:
    """Rows and issue chunks of the objects ``summary`` holds, stored by run ``run_id``."""
    rows = [summary_row(summary, o, str(run_id)) for o in summary.objects]
    chunks = [c for o in summary.objects for c in issue_chunks(o, max_bytes)]
    return rows, chunks


def decode_summary(
    rows: Any, chunks_by_run: Mapping[str, Iterable[Mapping[str, list[Any]]]]
) -> DistrictVerification:
    """The inverse of :func:`encode_summary`: the rows, and the issue chunks of every run
    they refer to (by run id). Each object's issues come from its own run's chunks only."""
    checked = check_rows(rows)
    decoded = {str(run): issues_by_object(tables) for run, tables in chunks_by_run.items()}
    issues = {
        r["object"]: decoded.get(str(r["issues_run"]), {}).get(r["object"], []) for r in checked
    }
    return summary_from_rows(checked, issues)


# ---------------------------------------------------------------- accuracy over time


@dataclass(frozen=True)
class TrendRun:
    """One verification run of the district: the accuracy of each object it verified."""

    run_id: str
    verified_at: dt.datetime
    counts: dict[str, tuple[int, int]]
    """Each object's (distinct, errors)."""

    @property
    def accuracy(self) -> dict[str, float]:
        return {name: accuracy(d, e) for name, (d, e) in self.counts.items()}


@dataclass
class AccuracyTrend:
    """Each object's accuracy over the district's last runs, oldest run first."""

    district_number: int
    district_name: str
    runs: list[TrendRun] = field(default_factory=list)

    @property
    def objects(self) -> list[str]:
        """Every object some run verified, in the order they first appear."""
        return list(dict.fromkeys(name for run in self.runs for name in run.accuracy))

    def as_dict(self) -> dict[str, Any]:
        """The ``summary --trend --json`` document."""
        return {
            "district": {"number": self.district_number, "name": self.district_name},
            "objects": self.objects,
            "runs": [
                {
                    "run_id": r.run_id,
                    "verified_at": r.verified_at.isoformat(),
                    "accuracy": {k: round(v, 2) for k, v in r.accuracy.items()},
                }
                for r in self.runs
            ],
        }


def trend_from_summaries(
    district: int, summaries: Sequence[tuple[str | None, Any]], district_name: str = ""
) -> AccuracyTrend:
    """The trend from stored summary tables, given as ``(run id, rows)`` newest first.

    A run counts for the objects it verified itself (its rows whose ``issues_run`` is that
    run); the rows it carried over from earlier runs are not new points, and a version
    attached to no run (run id None) adds none. Runs come oldest first, by when they
    verified (two runs at once store in either order).
    """
    trend = AccuracyTrend(district, district_name)
    own: dict[str, dict[str, Mapping[str, Any]]] = {}
    for run_id, rows in summaries:
        if run_id is None:
            continue
        for row in check_rows(rows):
            if row["issues_run"] == str(run_id):
                own.setdefault(str(run_id), {}).setdefault(row["object"], row)
    runs = []
    for run_id, by_object in own.items():
        verified_at = max(_verified_at(r) for r in by_object.values())
        runs.append((verified_at, run_id, list(by_object.values())))
    runs.sort(key=lambda run: (run[0], run[1]))
    for verified_at, run_id, rows in runs:
        trend.district_name = str(rows[-1]["district_name"])
        trend.runs.append(
            TrendRun(
                run_id=run_id,
                verified_at=verified_at,
                counts={r["object"]: (int(r["distinct"]), int(r["errors"])) for r in rows},
            )
        )
    return trend
