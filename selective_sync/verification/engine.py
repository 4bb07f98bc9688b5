"""Streaming verification: which records of one district differ between district and state.

Both databases are read as two independent streams of normalised rows ordered by key (see
``normalise``: each row is ``(key, packed text of the compared values)``), so the two may
be different engines on different servers; no SQL ever spans both. The streams are
merged in key windows: each round takes a chunk from each side, settles every key up to the
smaller of the two chunks' last keys and carries the rest over. Each window's packed texts
are first checked to be clean (one C-level join and two counts for the whole window of the
district side; a state row needs checking only if it differs from the district's); the
rare rows that are not (a value holds U+001F or U+001E, so their text may equal another
record's) are set aside and settled afterwards from their typed rows, whether their texts
are equal or not. Equal windows are then skipped with one C-level list comparison; unequal
ones are bisected by key until the differing rows are isolated. Memory is a few chunks per
side, however large the district, plus the result itself (its key lists and record issues
grow with the number of differences).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Engine, Select

from selective_sync.db import check_schema
from selective_sync.errors import BadInput
from selective_sync.models import ColumnDiff, DistrictVerification, ObjectVerification, RecordIssue
from selective_sync.registry import ObjectSpec, get_object, object_names
from selective_sync.verification.normalise import (
    NULL_MARK,
    SEP,
    Side,
    compared_labels,
    compared_select,
    key_column,
    packed_is_clean,
    packed_select,
    unpack,
)

log = logging.getLogger(__name__)

IN_BATCH = 500
"""Keys per ``IN (...)`` query: well under every driver's bound-parameter limit."""

_LEAF_ROWS = 32
"""Unequal windows are bisected until both halves together hold at most this many rows."""

_PREFETCH_DEPTH = 1
"""Chunks a reader thread may hold ready beyond the one being merged (bounds memory)."""

_key = itemgetter(0)
_text = itemgetter(1)
_UNCLEAN = object()
"""Stands in for the text of a district row that is not clean, so that its key always
compares unequal and reaches ``_mismatch`` (bisection uses keys only)."""
Row = tuple[Any, ...]


# ------------------------------------------------------------------ reading one side


def _compile(engine: Engine, stmt: Select) -> tuple[str, Any]:
    """SQL text and DBAPI parameters for ``stmt`` in the engine's dialect and paramstyle."""
    compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if compiled.positional:
        return compiled.string, tuple(params[name] for name in compiled.positiontup)
    return compiled.string, params


def _batched(items: list[int], size: int) -> Iterator[list[int]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@contextmanager
def _raw_cursor(conn: Connection, server_side: bool) -> Iterator[Any]:
    """A DBAPI cursor on ``conn``; server-side where the driver buffers results otherwise.

    Rows are read straight from the DBAPI cursor: plain tuples, no per-row SQLAlchemy
    objects. SQLite steps lazily already; psycopg needs a named cursor and PyMySQL/MySQLdb
    an SSCursor, or they would load the whole result into memory.
    """
    dbapi_conn = conn.connection.dbapi_connection
    dialect = conn.dialect
    cursor = None
    if server_side and dialect.name == "postgresql":
        # A cursor is planned for its first 10% of rows by default, which on freshly
        # loaded tables (no statistics yet) picked a nested loop over the whole identity
        # table per person: 100,000 persons did not finish in minutes. We read every row,
        # so say so; SET LOCAL ends with the transaction (rolled back when the connection
        # returns to the pool).
        with dbapi_conn.cursor() as setup:
            setup.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        cursor = dbapi_conn.cursor(name=f"verify_{uuid.uuid4().hex[:12]}")
    elif server_side and dialect.name in ("mysql", "mariadb"):
        sscursor = getattr(getattr(dialect.dbapi, "cursors", None), "SSCursor", None)
        if sscursor is not None:
            cursor = dbapi_conn.cursor(sscursor)
        else:
            log.warning("no server-side cursor for driver %s: results are buffered", dialect.driver)
    if cursor is None:
        cursor = dbapi_conn.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def _side_chunks(
    engine: Engine,
    spec: ObjectSpec,
    side: Side,
    district_number: int,
    keys: list[int] | None,
    chunk_rows: int,
    packed: bool = True,
) -> Iterator[list[Row]]:
    """Non-empty lists of rows of one side, ascending by key: packed ``(key, text)`` rows,
    or with ``packed=False`` the typed ``(key, *compared values)``."""
    build = packed_select if packed else compared_select
    base = build(spec, side, district_number, engine.dialect.name)
    key_col = key_column(spec, side)
    with engine.connect() as conn:
        if keys is None:
            sql, params = _compile(engine, base.order_by(key_col))
            with _raw_cursor(conn, server_side=True) as cursor:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(chunk_rows):
                    yield rows
            return
        # Sorted, disjoint batches each ordered by key: their concatenation is in key order.
        pending: list[Row] = []
        with _raw_cursor(conn, server_side=False) as cursor:
            for batch in _batched(keys, IN_BATCH):
                sql, params = _compile(engine, base.where(key_col.in_(batch)).order_by(key_col))
                cursor.execute(sql, params)
                pending.extend(cursor.fetchall())
                if len(pending) >= chunk_rows:
                    yield pending
                    pending = []
        if pending:
            yield pending


def _reader(engine: Engine, make: Callable[[], Iterator[list[Row]]], name: str):
    """Chunks of one side: read ahead in a thread for a server, inline for SQLite.

    Against a server, the wait for one side's next chunk overlaps with the other side and
    the merge (drivers release the GIL while waiting on the network). sqlite3 releases and
    retakes the GIL for every row, so two reader threads mostly fight over it: measured
    10-20% slower than reading both files in turn from this thread.
    """
    if engine.dialect.name == "sqlite":
        return _Inline(make)
    return _Prefetch(make, name)


class _Inline:
    """The same interface as ``_Prefetch``, reading in the caller's thread."""

    def __init__(self, make: Callable[[], Iterator[list[Row]]]) -> None:
        self._chunks = make()

    def __iter__(self) -> Iterator[list[Row]]:
        return self._chunks

    def close(self) -> None:
        self._chunks.close()


class _Prefetch:
    """Runs a chunk generator in its own thread, at most ``_PREFETCH_DEPTH`` chunks ahead.

    The generator opens its connection inside the thread, so no connection crosses threads.
    """

    _DONE = object()

    def __init__(self, make: Callable[[], Iterator[list[Row]]], name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=_PREFETCH_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make: Callable[[], Iterator[list[Row]]]) -> None:
        try:
            chunks = make()
            try:
                for chunk in chunks:
                    if not self._put(chunk):
                        return
            finally:
                chunks.close()  # closes the cursor and connection in this thread
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
            return
        self._put(self._DONE)

    def __iter__(self) -> Iterator[list[Row]]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with suppress(queue.Empty):
                self._queue.get(timeout=0.1)
        self._thread.join()


# ------------------------------------------------------------------ merging the two sides


class _Collector:
    """Accumulates the three key sets, the counts and the record issues, in key order."""

    def __init__(self, spec: ObjectSpec, with_diffs: bool, packed: bool = True) -> None:
        self.spec = spec
        self.labels = compared_labels(spec)
        self.with_diffs = with_diffs
        self.packed = packed
        self.columns = len(self.labels)
        # Indexes in issues of mismatches to settle from typed rows: a row that is not clean
        # on either side (equal or not: dropped there if the typed values are equal), or a
        # packed text that did not unpack.
        self.undecoded: list[int] = []
        self.at_district = 0
        self.at_state = 0
        self.missing_at_state: list[int] = []
        self.missing_at_district: list[int] = []
        self.mismatched: list[int] = []
        self.issues: list[RecordIssue] = []

    def window(self, district: list[Row], state: list[Row]) -> None:
        """Settle every key of one window (all keys up to the same bound on both sides)."""
        self.at_district += len(district)
        self.at_state += len(state)
        if self.packed:
            district = self._set_aside_unclean(district)
        self._compare(district, state)

    def _set_aside_unclean(self, district: list[Row]) -> list[Row]:
        """The district rows with every row that is not clean (see ``normalise``) made to
        compare unequal. Clean rows add exactly one SEP or NULL_MARK per column, any other
        row more: so one join and two C-level counts clear the whole window.

        The state side needs no such pass: a state row equal to a clean district row is
        clean, one of a key missing at the district is reported whatever its text, and any
        other reaches ``_mismatch``, which checks it.
        """
        text = "".join(map(_text, district))
        if text.count(SEP) + text.count(NULL_MARK) == self.columns * len(district):
            return district
        spec = self.spec
        return [row if packed_is_clean(spec, row[1]) else (row[0], _UNCLEAN) for row in district]

    def _compare(self, district: list[Row], state: list[Row]) -> None:
        # A C-level list comparison skips equal windows; unequal ones are bisected by key so
        # that their equal halves are skipped the same way: scattered differences cost
        # O(rows) comparisons plus a little per difference.
        if district == state:
            return
        if not district:
            for row in state:
                self._issue(row[0], "missing_at_district")
            return
        if not state:
            for row in district:
                self._issue(row[0], "missing_at_state")
            return
        if len(district) + len(state) <= _LEAF_ROWS:
            self._leaf(district, state)
            return
        longer = district if len(district) >= len(state) else state
        middle = longer[len(longer) // 2][0]
        i = bisect_left(district, middle, key=_key)
        j = bisect_left(state, middle, key=_key)
        self._compare(district[:i], state[:j])
        self._compare(district[i:], state[j:])

    def _leaf(self, district: list[Row], state: list[Row]) -> None:
        by_key_d = {row[0]: row for row in district}
        by_key_s = {row[0]: row for row in state}
        for key in sorted(by_key_d.keys() | by_key_s.keys()):
            d_row = by_key_d.get(key)
            s_row = by_key_s.get(key)
            if s_row is None:
                self._issue(key, "missing_at_state")
            elif d_row is None:
                self._issue(key, "missing_at_district")
            elif d_row != s_row:
                self._mismatch(key, d_row, s_row)

    def _issue(self, key: int, kind: str) -> None:
        getattr(self, kind).append(key)
        self.issues.append(RecordIssue(key, kind))

    def _values(self, row: Row) -> tuple[Any, ...] | None:
        return unpack(self.spec, row[1]) if self.packed else row[1:]

    def _mismatch(self, key: int, d_row: Row, s_row: Row) -> None:
        self.mismatched.append(key)
        diffs: tuple[ColumnDiff, ...] = ()
        if self.packed and (d_row[1] is _UNCLEAN or not packed_is_clean(self.spec, s_row[1])):
            # Possibly equal after all: the typed read decides (and drops it if so).
            self.undecoded.append(len(self.issues))
        elif self.with_diffs:
            d_values, s_values = self._values(d_row), self._values(s_row)
            if d_values is None or s_values is None:
                self.undecoded.append(len(self.issues))
            else:
                diffs = column_diffs(self.labels, d_values, s_values)
        self.issues.append(RecordIssue(key, "mismatched", diffs))


def column_diffs(
    labels: Sequence[str], district: Sequence[Any], state: Sequence[Any]
) -> tuple[ColumnDiff, ...]:
    """The compared columns whose normalised values differ, in registry order."""
    return tuple(
        ColumnDiff(label, d_val, s_val)
        for label, d_val, s_val in zip(labels, district, state, strict=True)
        if d_val != s_val
    )


def _merge(
    district_chunks: Iterable[list[Row]], state_chunks: Iterable[list[Row]], sink: _Collector
) -> None:
    """Merge two key-ordered chunk streams into windows that cover the same key range."""
    d_iter, s_iter = iter(district_chunks), iter(state_chunks)
    d_buf: list[Row] = []
    s_buf: list[Row] = []
    d_done = s_done = False
    while True:
        # Refill only an emptied side: each buffer then holds at most one chunk.
        if not d_buf and not d_done:
            d_buf = next(d_iter, None) or []
            d_done = not d_buf
        if not s_buf and not s_done:
            s_buf = next(s_iter, None) or []
            s_done = not s_buf
        if d_done and s_done:
            sink.window(d_buf, s_buf)
            return
        # A finished side no longer limits the window; a live one limits it to its last key.
        if d_done:
            bound = s_buf[-1][0]
        elif s_done:
            bound = d_buf[-1][0]
        else:
            bound = min(d_buf[-1][0], s_buf[-1][0])
        d_win, d_buf = _split(d_buf, bound)
        s_win, s_buf = _split(s_buf, bound)
        sink.window(d_win, s_win)


def _split(rows: list[Row], bound: Any) -> tuple[list[Row], list[Row]]:
    """(rows with key <= bound, the rest); no copy when the whole list is in the window."""
    if not rows or rows[-1][0] <= bound:
        return rows, []
    cut = bisect_right(rows, bound, key=_key)
    return rows[:cut], rows[cut:]


# ------------------------------------------------------------------ public API


def _clean_keys(keys: Iterable[int]) -> list[int]:
    try:
        return sorted({int(k) for k in keys})
    except (TypeError, ValueError) as exc:
        raise BadInput(f"keys must be whole numbers: {exc}") from exc


def verify_object(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec,
    district_number: int,
    keys: Iterable[int] | None = None,
    *,
    chunk_rows: int = 20_000,
    with_diffs: bool = True,
) -> ObjectVerification:
    """Verify one object of one district: every key, or only ``keys``.

    Keys asked for that exist on neither side are not counted anywhere. With
    ``with_diffs`` each mismatch lists its differing columns (normalised values).
    """
    if chunk_rows < 1:
        raise BadInput("chunk_rows must be at least 1")
    key_list = None if keys is None else _clean_keys(keys)
    started = time.perf_counter()
    verified_at = datetime.now(UTC)
    sink = _Collector(spec, with_diffs)
    if key_list is None or key_list:

        def reader(engine: Engine, side: Side) -> _Inline | _Prefetch:
            def make() -> Iterator[list[Row]]:
                return _side_chunks(engine, spec, side, district_number, key_list, chunk_rows)

            return _reader(engine, make, name=f"verify-{spec.name}-{side}")

        district_reader = reader(district_engine, "district")
        try:
            state_reader = reader(state_engine, "state")
            try:
                _merge(district_reader, state_reader, sink)
            finally:
                state_reader.close()
        finally:
            district_reader.close()
    if sink.undecoded:
        _diff_from_typed_rows(district_engine, state_engine, spec, district_number, sink)
    result = ObjectVerification(
        object=spec.name,
        district_number=district_number,
        verified_at=verified_at,
        at_district=sink.at_district,
        at_state=sink.at_state,
        missing_at_state=sink.missing_at_state,
        missing_at_district=sink.missing_at_district,
        mismatched=sink.mismatched,
        issues=sink.issues,
        keys_requested=None if key_list is None else len(key_list),
    )
    log.info(
        "verified %s for district %s: %d at district, %d at state, %d errors, %.2f%% in %.2fs",
        spec.name,
        district_number,
        result.at_district,
        result.at_state,
        result.errors,
        result.accuracy,
        time.perf_counter() - started,
    )
    return result


def _diff_from_typed_rows(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec,
    district_number: int,
    sink: _Collector,
) -> None:
    """Settle the mismatches the packed rows could not (``sink.undecoded``: a value held
    U+001F or U+001E on either side): read those keys' typed rows again and compare them
    column by column. Equal typed rows are in sync: their issue and key are dropped. Others
    stay mismatched, with their column differences if the sink wants them (none if the key
    has gone from either side since: it changed meanwhile, so it is kept)."""
    keys = [sink.issues[i].key for i in sink.undecoded]
    district = fetch_compared_rows(district_engine, spec, "district", district_number, keys)
    state = fetch_compared_rows(state_engine, spec, "state", district_number, keys)
    in_sync: set[int] = set()
    for index in sink.undecoded:
        key = sink.issues[index].key
        if key in district and key in state:
            diffs = column_diffs(sink.labels, district[key], state[key])
            if not diffs:
                in_sync.add(key)
            elif sink.with_diffs:
                sink.issues[index] = RecordIssue(key, "mismatched", diffs)
    sink.undecoded = []
    if in_sync:
        sink.mismatched = [key for key in sink.mismatched if key not in in_sync]
        sink.issues = [
            issue
            for issue in sink.issues
            if not (issue.issue == "mismatched" and issue.key in in_sync)
        ]


def verify_district(
    district_engine: Engine,
    state_engine: Engine,
    district_number: int,
    district_name: str,
    objects: Sequence[str] | None = None,
    *,
    chunk_rows: int = 20_000,
) -> DistrictVerification:
    """The Verification Summary of one district: every registry object, or ``objects``."""
    specs = [get_object(name) for name in (objects or object_names())]
    check_schema(district_engine, "district")
    check_schema(state_engine, "state")
    results = [
        verify_object(district_engine, state_engine, spec, district_number, chunk_rows=chunk_rows)
        for spec in specs
    ]
    return DistrictVerification(district_number, district_name, results)


def fetch_compared_rows(
    engine: Engine, spec: ObjectSpec, side: Side, district_number: int, keys: Iterable[int]
) -> dict[int, tuple[Any, ...]]:
    """Normalised compared values of ``keys`` on one side: {key: (values in label order)}.

    Keys absent on that side are absent from the result. Values are exactly those
    verification compares, so equal tuples on both sides mean the record is in sync.
    """
    key_list = _clean_keys(keys)
    if not key_list:
        return {}
    chunks = _side_chunks(engine, spec, side, district_number, key_list, IN_BATCH, packed=False)
    return {row[0]: tuple(row[1:]) for chunk in chunks for row in chunk}
