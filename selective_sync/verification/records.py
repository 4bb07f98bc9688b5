"""The stored Verification Summary in the state database: the record of every verification.

Each verification stores, per district and object it verified, one ``verification_result``
row (the codec's summary row: figures, ``verified_at``, the run id that holds the issues)
and its record issues in ``verification_issues`` chunks (the codec's issue rows as JSON).
Nothing is merged on writing: the district's current summary is, per object, the result
with the newest ``verified_at`` (two runs at once never make an object read back older
than its newest result, whichever stored last), and a run's own rows are its point of the
accuracy trend. The record issues of results two or more behind the newest are dropped
when a newer one is stored: only the current result's issues are ever read back, and the
one before stays for a reader that read the rows just before a new store.

These functions take an engine (or connection) and know nothing of rights, settings or
Prefect: ``store.DatabaseSummaryStore`` is the reader the CLI and the flows use.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, tuple_

from selective_sync.db import IN_LIST_SIZE, chunked
from selective_sync.errors import StoredSummaryError
from selective_sync.models import DistrictVerification, RecordIssue
from selective_sync.registry import object_names
from selective_sync.schema import verification_issues, verification_result
from selective_sync.verification.codec import (
    CHUNK_BYTES,
    AccuracyTrend,
    IssueChunk,
    check_rows,
    encode_summary,
    issues_by_object,
    newest_rows,
    object_from_row,
    trend_from_summaries,
)

log = logging.getLogger(__name__)

KEEP_ISSUES = 2
"""Results per district and object whose record issues are kept (the newest ones)."""


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _stored_at() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# ---------------------------------------------------------------- writing


def store_results(
    engine: Engine, summary: DistrictVerification, run_id: str, max_bytes: int = CHUNK_BYTES
) -> list[dict[str, Any]]:
    """Store the objects ``summary`` holds as verified by ``run_id`` (rows and record issues,
    in one transaction; a repeat of the same run replaces its rows). Returns the rows stored."""
    rows, chunks = encode_summary(summary, str(run_id), max_bytes)
    store_encoded(engine, summary.district_number, rows, chunks)
    return rows


def store_encoded(
    engine: Engine, district: int, rows: Sequence[Mapping[str, Any]], chunks: Sequence[IssueChunk]
) -> None:
    """Store one run's encoded results (``codec.encode_summary``) in one transaction."""
    tables: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for chunk in chunks:
        tables[chunk.object].append(chunk.table)
    with engine.begin() as conn:
        for row in rows:
            insert_result(conn, row, tables.get(row["object"], []))
        drop_old_issues(conn, district, [r["object"] for r in rows])
    log.info("stored the Verification Summary of district %s (%s objects)", district, len(rows))


def insert_result(conn: Connection, row: Mapping[str, Any], tables: Sequence[Any]) -> None:
    """One object's result (a codec summary row) and its issue tables, replacing any that
    the same run stored before."""
    (row,) = check_rows([dict(row)])
    key = {
        "district_number": int(row["district"]),
        "object": str(row["object"]),
        "run_id": str(row["issues_run"]),
    }
    for table in (verification_issues, verification_result):
        conn.execute(delete(table).where(*(table.c[k] == v for k, v in key.items())))
    conn.execute(
        insert(verification_result),
        [
            key
            | {
                "verified_at": _naive_utc(datetime.fromisoformat(row["verified_at"])),
                "stored_at": _stored_at(),
                "summary": json.dumps(row),
            }
        ],
    )
    if tables:
        conn.execute(
            insert(verification_issues),
            [key | {"part": n, "rows": json.dumps(t)} for n, t in enumerate(tables, start=1)],
        )


def drop_old_issues(conn: Connection, district: int, objects: Iterable[str]) -> None:
    """Delete the record issues of each object's results but the ``KEEP_ISSUES`` newest."""
    t = verification_result.c
    for name in objects:
        keep = conn.scalars(
            select(t.run_id)
            .where(t.district_number == district, t.object == name)
            .order_by(t.verified_at.desc(), t.stored_at.desc())
            .limit(KEEP_ISSUES)
        ).all()
        i = verification_issues.c
        conn.execute(
            delete(verification_issues).where(
                i.district_number == district, i.object == name, i.run_id.not_in(keep)
            )
        )


def has_results(engine: Engine, district: int) -> bool:
    """Whether anything is stored for ``district``."""
    with engine.connect() as conn:
        found = conn.execute(
            select(verification_result.c.run_id)
            .where(verification_result.c.district_number == district)
            .limit(1)
        ).first()
    return found is not None


# ---------------------------------------------------------------- reading


def current_rows(engine: Engine, districts: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Each district's current summary rows (per object its newest result; registry order;
    the district's name as its latest stored row has it). A district with nothing stored
    is absent."""
    t = verification_result.c
    found: dict[int, dict[str, tuple]] = defaultdict(dict)
    with engine.connect() as conn:
        for numbers in chunked(sorted(set(districts)), IN_LIST_SIZE):
            newest = (
                select(t.district_number, t.object, func.max(t.verified_at).label("newest"))
                .where(t.district_number.in_(numbers))
                .group_by(t.district_number, t.object)
                .subquery()
            )
            on_newest = (
                (t.district_number == newest.c.district_number)
                & (t.object == newest.c.object)
                & (t.verified_at == newest.c.newest)
            )
            query = select(t.district_number, t.object, t.stored_at, t.run_id, t.summary)
            query = query.select_from(verification_result.join(newest, on_newest))
            for number, name, stored_at, run_id, text in conn.execute(query):
                kept = found[number].get(name)
                # Two results of one moment: the one stored last.
                if kept is None or (stored_at, run_id) > kept[:2]:
                    found[number][name] = (stored_at, run_id, text)
    current = {}
    for number, by_object in found.items():
        latest_first = sorted(by_object.values(), key=lambda v: v[:2], reverse=True)
        current[number] = newest_rows([[_row(text) for _at, _run, text in latest_first]])
    return current


def load_summary(
    engine: Engine, district: int, known: DistrictVerification | None = None
) -> DistrictVerification | None:
    """The district's current summary in full (figures, key lists, record issues); None if
    nothing is stored. Objects of ``known`` whose result is the current one are taken from
    it instead of being read back."""
    rows = current_rows(engine, [district]).get(district)
    if rows is None:
        return None
    have = {}
    if known is not None:
        at = {r["object"]: r["verified_at"] for r in rows}
        have = {o.object: o for o in known.objects if at.get(o.object) == o.verified_at.isoformat()}
    wanted = [
        (r["object"], str(r["issues_run"]))
        for r in rows
        if r["issue_rows"] and r["object"] not in have
    ]
    issues = _read_issues(engine, district, wanted)
    objects = [
        have.get(r["object"]) or object_from_row(r, issues.get(r["object"], [])) for r in rows
    ]
    return DistrictVerification(district, str(rows[0]["district_name"]), objects)


def _read_issues(
    engine: Engine, district: int, wanted: Sequence[tuple[str, str]]
) -> dict[str, list[RecordIssue]]:
    """The record issues of each (object, run) wanted, by object."""
    if not wanted:
        return {}
    i = verification_issues.c
    tables = []
    with engine.connect() as conn:
        for pairs in chunked(list(wanted), IN_LIST_SIZE):
            query = select(i.rows).where(
                i.district_number == district, tuple_(i.object, i.run_id).in_(pairs)
            )
            tables.extend(json.loads(text) for (text,) in conn.execute(query))
    return issues_by_object(tables)


def trend(engine: Engine, district: int, runs: int) -> AccuracyTrend:
    """Each object's accuracy in the district's last ``runs`` verification runs, oldest
    first (each run counts for the objects it verified)."""
    t = verification_result.c
    with engine.connect() as conn:
        newest = conn.execute(
            select(t.run_id, func.max(t.verified_at).label("at"))
            .where(t.district_number == district)
            .group_by(t.run_id)
            .order_by(func.max(t.verified_at).desc(), t.run_id)
            .limit(runs)
        ).all()
        run_ids = [run_id for run_id, _at in newest]
        by_run: dict[str, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
        if run_ids:
            query = select(t.run_id, t.summary).where(
                t.district_number == district, t.run_id.in_(run_ids)
            )
            for run_id, text in conn.execute(query):
                by_run[run_id].append(_row(text))
    order = {name: i for i, name in enumerate(object_names())}
    for rows in by_run.values():  # registry order: the chart's legend, the table's columns
        rows.sort(key=lambda r: (order.get(r["object"], len(order)), r["object"]))
    return trend_from_summaries(district, [(run_id, by_run[run_id]) for run_id in run_ids])


def _row(text: str) -> dict[str, Any]:
    try:
        row = json.loads(text)
    except ValueError as exc:
        raise StoredSummaryError("a stored Verification Summary row is not JSON") from exc
    return check_rows([row])[0]
