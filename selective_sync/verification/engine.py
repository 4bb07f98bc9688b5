"""Streaming verification: which records of one district differ between district and state.

Verification compares whole objects: the compared row and every child part the registry
declares (a person's identity history). Each side's database computes one digest per key
over the normalised object (``digest``: md5 on PostgreSQL and MariaDB/MySQL, the canonical
text itself on SQLite), and both are read as two independent streams of ``(key, digest)``
ordered by key, so the two may be different engines on different servers; no SQL ever spans
both. The streams are merged in key windows: each round takes a chunk from each side,
settles every key up to the smaller of the two chunks' last keys and carries the rest over.
Equal windows are skipped with one C-level list comparison; unequal ones are bisected by key
until the differing keys are isolated. Only then are the full normalised rows of those keys
read on both sides (``fetch_object_rows``), to list their column differences. Memory is a
few chunks per side, however large the district, plus the result itself (its key lists and
record issues grow with the number of differences).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import partial
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Select, bindparam
from sqlalchemy.sql.compiler import SQLCompiler as Compiled
from sqlalchemy.sql.elements import BindParameter

from selective_sync.db import IN_LIST_SIZE, check_schema, chunked
from selective_sync.errors import BadInput
from selective_sync.models import ColumnDiff, DistrictVerification, ObjectVerification, RecordIssue
from selective_sync.registry import ObjectSpec, get_object, object_names
from selective_sync.verification.digest import (
    ChildPart,
    child_diffs,
    child_parts,
    child_select,
    hash_text,
    token_select,
)
from selective_sync.verification.normalise import Side, compared_labels, compared_select, key_column

log = logging.getLogger(__name__)

"""Keys per ``IN (...)`` query: well under every driver's bound-parameter limit."""

_LEAF_ROWS = 32
"""Unequal windows are bisected until both halves together hold at most this many rows."""

_PREFETCH_DEPTH = 1
"""Chunks a reader thread may hold ready beyond the one being merged (bounds memory)."""

_GROUP_CONCAT_MAX = "SET SESSION group_concat_max_len = 1073741824"
"""MariaDB/MySQL's GROUP_CONCAT limit for a child section, 1 GiB: far above any history,
so a section is never cut short (the default 1 MB would silently truncate it)."""

_key = itemgetter(0)
Row = tuple[Any, ...]


# ------------------------------------------------------------------ reading one side


_KEYS = "keys"
_PREPARED_MAX = 256
_prepared: dict[tuple, tuple[Dialect, Compiled]] = {}


def _prepared_sql(engine: Engine, key: tuple, build: Callable[[BindParameter], Select]) -> Compiled:
    """``build(keys)`` compiled for the engine's dialect, once: later calls with the same
    ``key`` (a hashable description of the statement) reuse it for other keys.

    Building and compiling a digest select costs 10-20 ms (PersonIdentity); a request reads
    both sides in batches, and the flows verify before and after they write. ``keys`` is an
    expanding bound parameter, filled in by ``_sql_for``. Keyed by the dialect object, as
    compiled SQL may depend on a server's settings.
    """
    full = (id(engine.dialect), *key)
    found = _prepared.get(full)
    if found is not None and found[0] is engine.dialect:
        return found[1]
    compiled = build(bindparam(_KEYS, expanding=True)).compile(dialect=engine.dialect)
    if len(_prepared) >= _PREPARED_MAX:
        _prepared.clear()  # engines come and go (one per test database); keep it bounded
    _prepared[full] = (engine.dialect, compiled)
    return compiled


def _sql_for(compiled: Compiled, keys: Sequence[int] | None = None) -> tuple[str, Any]:
    """SQL text and DBAPI parameters of a compiled statement for ``keys``, in the dialect's
    paramstyle."""
    state = compiled.construct_expanded_state(None if keys is None else {_KEYS: list(keys)})
    if compiled.positional:
        return state.statement, tuple(state.positional_parameters)
    return state.statement, state.parameters


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
    if dialect.name == "postgresql":
        # The digests write dates with a text cast, which follows DateStyle: ISO gives
        # 'YYYY-MM-DD' as the other vendors do. SET LOCAL ends with the transaction.
        with dbapi_conn.cursor() as setup:
            setup.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            # JIT compiling the digest expressions took 1.7 s of a 1,000,000-key scan and
            # bought nothing: they are function calls, not arithmetic.
            setup.execute("SET LOCAL jit = off")
    if server_side and dialect.name == "postgresql":
        # A cursor is planned for its first 10% of rows by default, which on freshly
        # loaded tables (no statistics yet) picked a nested loop over the whole identity
        # table per person: 100,000 persons did not finish in minutes. We read every row,
        # so say so; SET LOCAL ends with the transaction (rolled back when the connection
        # returns to the pool).
        with dbapi_conn.cursor() as setup:
            setup.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        cursor = dbapi_conn.cursor(name=f"verify_{uuid.uuid4().hex[:12]}")
    if dialect.name in ("mysql", "mariadb"):
        with dbapi_conn.cursor() as setup:
            setup.execute(_GROUP_CONCAT_MAX)
    if server_side and dialect.name in ("mysql", "mariadb"):
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
    hash_here: bool = False,
) -> Iterator[list[Row]]:
    """Non-empty lists of rows of one side, ascending by key: ``(key, digest)`` rows
    (``digest.token_select``; with ``hash_here`` a SQLite side's texts are hashed here, to
    match a server's md5), or with ``packed=False`` the typed ``(key, *compared values)``."""
    dialect = engine.dialect.name
    key_col = key_column(spec, side)
    every = keys is None

    def build(batch: BindParameter) -> Select:
        if not packed:
            stmt = compared_select(spec, side, district_number, dialect)
            stmt = stmt if every else stmt.where(key_col.in_(batch))
        else:
            stmt = token_select(spec, side, district_number, dialect, None if every else batch)
        return stmt.order_by(key_col)

    compiled = _prepared_sql(engine, ("side", spec, side, district_number, packed, every), build)

    def finish(rows: list[Row]) -> list[Row]:
        return [(key, hash_text(text)) for key, text in rows] if hash_here else rows

    with engine.connect() as conn:
        if keys is None:
            with _raw_cursor(conn, server_side=True) as cursor:
                cursor.execute(*_sql_for(compiled))
                while rows := cursor.fetchmany(chunk_rows):
                    yield finish(rows)
            return
        # Sorted, disjoint batches each ordered by key: their concatenation is in key order.
        pending: list[Row] = []
        with _raw_cursor(conn, server_side=False) as cursor:
            for batch in chunked(keys):
                cursor.execute(*_sql_for(compiled, batch))
                pending.extend(cursor.fetchall())
                if len(pending) >= chunk_rows:
                    yield finish(pending)
                    pending = []
        if pending:
            yield finish(pending)


def _reader(engine: Engine, make: Callable[[], Iterator[list[Row]]], name: str):
    """Chunks of one side: read ahead in a thread for a server, inline for SQLite.

    Against a server, the wait for one side's next chunk overlaps with the other side and
    the merge (drivers release the GIL while waiting on the network). sqlite3 releases and
    retakes the GIL for every row, so two reader threads mostly fight over it: measured
    10-20% slower than reading both files in turn from this thread.
    """
    return _Prefetch(make, name) if reads_ahead(engine) else _Inline(make)


def reads_ahead(engine: Engine) -> bool:
    """Whether a side is read in a thread of its own: a server's yes, SQLite's no (see
    ``_reader``)."""
    return engine.dialect.name != "sqlite"


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
    """Accumulates the three key sets, the counts and the record issues, in key order.

    A mismatch is recorded without its column differences: those come from the full rows,
    read afterwards for the mismatched keys only (``_settle_from_rows``).
    """

    def __init__(self, spec: ObjectSpec, with_diffs: bool) -> None:
        self.spec = spec
        self.labels = compared_labels(spec)
        self.with_diffs = with_diffs
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
        self._compare(district, state)

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
                self._issue(key, "mismatched")

    def _issue(self, key: int, kind: str) -> None:
        getattr(self, kind).append(key)
        self.issues.append(RecordIssue(key, kind))


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
    # Two SQLite sides compare their canonical texts; a SQLite side facing a server hashes
    # its texts as the server does.
    mixed = {district_engine.dialect.name == "sqlite", state_engine.dialect.name == "sqlite"}
    if key_list is None or key_list:

        def reader(engine: Engine, side: Side) -> _Inline | _Prefetch:
            hash_here = len(mixed) == 2 and engine.dialect.name == "sqlite"

            def make() -> Iterator[list[Row]]:
                return _side_chunks(
                    engine,
                    spec,
                    side,
                    district_number,
                    key_list,
                    chunk_rows,
                    hash_here=hash_here,
                )

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
    if sink.mismatched and with_diffs:
        _settle_from_rows(district_engine, state_engine, spec, district_number, sink)
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
        "verified %s for district %s (%s): %d at district, %d at state, %d errors, %.2f%% in %.2fs",
        spec.name,
        district_number,
        "every key" if key_list is None else f"{len(key_list)} keys asked",
        result.at_district,
        result.at_state,
        result.errors,
        result.accuracy,
        time.perf_counter() - started,
    )
    return result


def _settle_from_rows(
    district_engine: Engine,
    state_engine: Engine,
    spec: ObjectSpec,
    district_number: int,
    sink: _Collector,
) -> None:
    """Give each mismatch its differences, from both sides' full normalised rows of the
    mismatched keys: compared columns first, then one line per differing child row.

    A key whose rows are equal now changed since its digest was read (it is in sync): its
    issue and key are dropped. One that has gone from either side since is kept, without
    differences (it changed meanwhile)."""
    keys = sink.mismatched

    def fetch(side: Side) -> dict[int, ObjectRows]:
        engine = district_engine if side == "district" else state_engine
        return fetch_object_rows(engine, spec, side, district_number, keys)

    if not (reads_ahead(district_engine) and reads_ahead(state_engine)):
        district, state = fetch("district"), fetch("state")
    else:
        # Two servers: each side's round trips overlap with the other's (about halves it).
        with ThreadPoolExecutor(1, thread_name_prefix=f"verify-{spec.name}-rows") as pool:
            later = pool.submit(fetch, "state")
            district, state = fetch("district"), later.result()
    in_sync: set[int] = set()
    for index, issue in enumerate(sink.issues):
        if issue.issue != "mismatched" or issue.key not in district or issue.key not in state:
            continue
        diffs = object_diffs(spec, district[issue.key], state[issue.key])
        if diffs:
            sink.issues[index] = RecordIssue(issue.key, "mismatched", diffs)
        else:
            in_sync.add(issue.key)
    if in_sync:
        log.info("%s: %d keys changed during verification and are in sync", spec.name, len(in_sync))
        sink.mismatched = [key for key in sink.mismatched if key not in in_sync]
        sink.issues = [
            issue
            for issue in sink.issues
            if not (issue.issue == "mismatched" and issue.key in in_sync)
        ]


ObjectRows = tuple[tuple[Any, ...], dict[str, dict[Any, tuple[Any, ...]]]]
"""A key's normalised compared values, and per child part label its rows {id: values}."""


def object_diffs(
    spec: ObjectSpec, district: ObjectRows, state: ObjectRows
) -> tuple[ColumnDiff, ...]:
    """The differences of one key: compared columns, then each differing child row."""
    diffs = column_diffs(compared_labels(spec), district[0], state[0])
    for child in child_parts(spec):
        diffs += child_diffs(
            child,
            district[1].get(child.label, {}),
            state[1].get(child.label, {}),
            _shown_already(spec, child, district[0], state[0]),
        )
    return diffs


def _shown_already(spec: ObjectSpec, child: ChildPart, district: tuple, state: tuple):
    """(child id, columns) of the child row both sides join as their compared row (e.g.
    the current identity), whose compared columns are listed already; None if none."""
    for join in spec.joins:
        if join.table != child.part.table or join.id_column != child.part.id_column:
            continue
        at = [
            i
            for i, c in enumerate(spec.compared)
            if c.table == spec.root and c.column == join.root_column
        ]
        if at and district[at[0]] == state[at[0]] and district[at[0]] is not None:
            columns = frozenset(c.column for c in spec.compared if c.table == join.table)
            return district[at[0]], columns
    return None


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
    chunks = _side_chunks(engine, spec, side, district_number, key_list, IN_LIST_SIZE, packed=False)
    return {row[0]: tuple(row[1:]) for chunk in chunks for row in chunk}


def fetch_object_rows(
    engine: Engine, spec: ObjectSpec, side: Side, district_number: int, keys: Iterable[int]
) -> dict[int, ObjectRows]:
    """The whole normalised object of ``keys`` on one side: {key: (compared values,
    {child part label: {child id: child values}})}; keys absent on that side are absent.

    Equal results on both sides mean exactly what equal digests mean: the key is in sync.
    """
    key_list = _clean_keys(keys)
    compared = fetch_compared_rows(engine, spec, side, district_number, key_list)
    children: dict[int, dict[str, dict[Any, tuple[Any, ...]]]] = {k: {} for k in compared}
    parts = child_parts(spec)
    if parts and compared:
        found = sorted(compared)
        with engine.connect() as conn, _raw_cursor(conn, server_side=False) as cursor:
            for child in parts:
                id_at = 1 + [name for name, _ in child.columns].index(child.part.id_column)
                compiled = _prepared_sql(
                    engine,
                    ("child", child, side, district_number),
                    partial(child_select, child, side, district_number, engine.dialect.name),
                )
                for batch in chunked(found):
                    cursor.execute(*_sql_for(compiled, batch))
                    for row in cursor.fetchall():
                        rows = children[row[0]].setdefault(child.label, {})
                        rows[row[id_at]] = tuple(row[1:])
    return {key: (values, children[key]) for key, values in compared.items()}
