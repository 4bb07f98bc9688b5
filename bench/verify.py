"""Benchmark the whole-object verification against baselines on the same demo databases.

    .venv/bin/python bench/verify.py --persons 1000000 [--dir DIR] [--seed S] [--repeat N]
                                     [--district-url U --state-url U [--reuse]]
                                     [--no-pandas] [--reladiff PYTHON | --no-reladiff]

Builds the demo (SQLite files in DIR, default bench/out/demo-<persons>; reused when DIR
already holds a demo of that size and seed; with URLs, rebuilt unless --reuse, which trusts
that the databases hold the demo of DIR's manifest: so one PostgreSQL and one MariaDB build
also serve PostgreSQL -> MariaDB) in a child process, so that its memory does not count
here. Then, in this process: our PersonIdentity verification first (the whole object:
person, current identity and identity history, digested by each side's database; its peak
RSS is its own), our Enrollment verification, and the baselines:

- the read limit of the compared rows alone: both sides' person + current identity rows,
  normalised and packed into one text per key as verification read them before it digested
  whole objects, streamed at once through the same cursors and thrown away (no history, no
  comparison): what verification cost at least before;
- the digest stream: both sides' (key, digest) rows streamed and thrown away (no merge);
- SQLite ATTACH + EXCEPT both ways over the same whole-object projection (key, canonical
  text; SQLite only);
- a pandas full-load merge of that projection (skipped with --no-pandas);
- reladiff (checksum bisection; run as a subprocess of its own virtual environment, given
  by --reladiff, default /tmp/reladiff-venv/bin/python when it exists) over that projection
  materialised as a table in each database (materialising not counted), with each setting
  it is run with printed (PostgreSQL only: its environment has only psycopg2).

Prints times, the ratios, the process's peak RSS after each step and whether all key sets
agree (with each other and with the demo manifest). Writes nothing outside DIR (and the
databases at the URLs, whose demo rows it replaces, and where it creates the reladiff table
``bench_whole_object`` and drops it again).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import String, cast, func, literal_column
from sqlalchemy.dialects import sqlite as sqlite_dialect

from selective_sync.db import make_engine, mask_url
from selective_sync.demo import DemoManifest
from selective_sync.registry import get_object
from selective_sync.settings import sqlite_url
from selective_sync.verification.digest import token_select
from selective_sync.verification.engine import _raw_cursor, _side_chunks, _sql_for, verify_object
from selective_sync.verification.normalise import compared_select, key_column

RELADIFF_VIEW = "bench_whole_object"
DEFAULT_RELADIFF = "/tmp/reladiff-venv/bin/python"

KINDS = ("missing_at_state", "missing_at_district", "mismatched")
KeySets = tuple[list[int], list[int], list[int]]


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak of this process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def demo_is_reusable(directory: Path, args: argparse.Namespace) -> bool:
    # A server database may have changed since (nothing here can tell): rebuild unless told.
    if args.district_url and not args.reuse:
        return False
    if args.district_url and args.reuse:
        # Trusted: the databases hold this manifest's demo (built by any pair of URLs).
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            return False
        manifest = DemoManifest.load(manifest_path)
        return manifest.persons == args.persons and manifest.seed == args.seed
    source = directory / "bench-source.json"
    if not (directory / "manifest.json").exists() or not source.exists():
        return False
    try:
        manifest = DemoManifest.load(directory / "manifest.json")
        recorded = json.loads(source.read_text())
    except (ValueError, OSError):
        return False
    wanted = {"district_url": args.district_url, "state_url": args.state_url}
    files_ok = args.district_url or (directory / "district.db").exists()
    return (
        manifest.persons == args.persons
        and manifest.seed == args.seed
        and recorded == wanted
        and bool(files_ok)
    )


def build_demo(directory: Path, args: argparse.Namespace) -> None:
    """Generate the demo in a child process: its peak memory must not count as ours."""
    code = (
        "import sys; from pathlib import Path; from selective_sync.demo import generate_demo; "
        "generate_demo(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), "
        "district_url=sys.argv[4] or None, state_url=sys.argv[5] or None)"
    )
    started = time.perf_counter()
    print(f"generating a demo of {args.persons:,} persons in {directory} …", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(directory),
            str(args.persons),
            str(args.seed),
            args.district_url or "",
            args.state_url or "",
        ],
        check=True,
    )
    source = {"district_url": args.district_url, "state_url": args.state_url}
    (directory / "bench-source.json").write_text(json.dumps(source))
    print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)


def key_sets_of(result) -> KeySets:
    return result.missing_at_state, result.missing_at_district, result.mismatched


def sets_from_two_differences(d_minus_s: set[int], s_minus_d: set[int]) -> KeySets:
    """Keys of rows only at one side, split into the three kinds."""
    both = d_minus_s & s_minus_d
    return sorted(d_minus_s - both), sorted(s_minus_d - both), sorted(both)


def literal_sql(stmt, dialect) -> str:
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def whole_object_sql(spec, side: str, district_number: int, dialect) -> str:
    """The whole-object projection of one side as plain SQL: (key, canonical text), the
    text our digests hash (the baselines compare it themselves)."""
    stmt = token_select(spec, side, district_number, dialect.name, hashed=False)
    return literal_sql(stmt, dialect)


def except_baseline(district_db: Path, state_db: Path, spec, district_number: int) -> KeySets:
    """SQLite ATTACH + EXCEPT both ways over the same whole-object projection."""
    dialect = sqlite_dialect.dialect()
    queries = {
        side: whole_object_sql(spec, side, district_number, dialect)
        for side in ("district", "state")
    }
    conn = sqlite3.connect(district_db)
    try:
        # District and state table names differ (state_*), so no schema prefix is needed.
        conn.execute("ATTACH DATABASE ? AS st", (str(state_db),))
        d_minus_s = {
            k
            for (k,) in conn.execute(
                f'SELECT "key" FROM ({queries["district"]} EXCEPT {queries["state"]})'
            )
        }
        s_minus_d = {
            k
            for (k,) in conn.execute(
                f'SELECT "key" FROM ({queries["state"]} EXCEPT {queries["district"]})'
            )
        }
    finally:
        conn.close()
    return sets_from_two_differences(d_minus_s, s_minus_d)


def pandas_baseline(district_engine, state_engine, spec, district_number: int) -> KeySets:
    """Load both sides' whole-object projection with read_sql, outer-merge on the key,
    compare the texts."""
    import pandas as pd  # imported late: its import alone would count in our peak RSS

    frames = []
    for engine, side in ((district_engine, "district"), (state_engine, "state")):
        with engine.connect() as conn:
            sql = whole_object_sql(spec, side, district_number, engine.dialect)
            frames.append(pd.read_sql_query(sql, conn))
    district, state = frames
    merged = district.merge(state, on="key", how="outer", suffixes=("_d", "_s"), indicator=True)
    only_d = merged.loc[merged["_merge"] == "left_only", "key"]
    only_s = merged.loc[merged["_merge"] == "right_only", "key"]
    both = merged[merged["_merge"] == "both"]
    mismatched = both.loc[both["token_d"] != both["token_s"], "key"]
    return (
        sorted(int(k) for k in only_d),
        sorted(int(k) for k in only_s),
        sorted(int(k) for k in mismatched),
    )


def packed_compared_select(spec, side: str, district_number: int, dialect_name: str):
    """(key, packed text) of the compared row alone, as verification read it before it
    digested whole objects: each normalised value followed by U+001F, NULL as U+001E."""
    base = compared_select(spec, side, district_number, dialect_name)
    key, *values = base.selected_columns
    sep = literal_column("'\x1f'", String)
    null = literal_column("'\x1e'", String)
    packed = None
    for compared, value in zip(spec.compared, values, strict=True):
        text = value.element
        if compared.normalise in ("int", "exact"):
            text = cast(text, String)
        part = func.coalesce(text + sep, null, type_=String)
        packed = part if packed is None else packed + part
    return base.with_only_columns(key, packed.label("packed"))


def _drain_both(make_chunks) -> str:
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def drain(side: str) -> None:
        try:
            counts[side] = sum(len(chunk) for chunk in make_chunks(side))
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(side,)) for side in ("district", "state")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return f"{counts['district']:,} + {counts['state']:,} rows read"


def read_baseline(district_engine, state_engine, spec, district_number, chunk_rows) -> str:
    """The read limit of the compared rows alone: both sides' packed compared rows (no
    history) streamed through verification's server-side cursors and chunk size, both
    sides at once in two threads (as verification reads ahead on servers); rows are
    counted and dropped."""
    engines = {"district": district_engine, "state": state_engine}

    def chunks(side: str):
        engine = engines[side]
        stmt = packed_compared_select(spec, side, district_number, engine.dialect.name)
        ordered = stmt.order_by(key_column(spec, side))
        sql, params = _sql_for(ordered.compile(dialect=engine.dialect))
        with engine.connect() as conn, _raw_cursor(conn, server_side=True) as cursor:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(chunk_rows):
                yield rows

    return _drain_both(chunks)


def digest_stream(district_engine, state_engine, spec, district_number, chunk_rows) -> str:
    """Both sides' (key, digest) rows, exactly as verification reads them, thrown away."""
    engines = {"district": district_engine, "state": state_engine}

    def chunks(side: str):
        return _side_chunks(engines[side], spec, side, district_number, None, chunk_rows)

    return _drain_both(chunks)


def _reladiff_url(engine) -> str:
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def reladiff_runs(
    python: str, district_engine, state_engine, spec, district_number: int
) -> list[tuple[str, float, KeySets | None, str]]:
    """reladiff over a view of the whole-object projection in each database, with each
    setting: (settings, seconds, key sets or None, note)."""
    views = []
    try:
        for engine, side in ((district_engine, "district"), (state_engine, "state")):
            sql = whole_object_sql(spec, side, district_number, engine.dialect)
            # A table, not a view: reladiff runs one checksum query per key segment, and a
            # view would recompute the whole history aggregate for each (a first run had
            # not finished after 10 minutes). Materialising is timed apart and not counted.
            started = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {RELADIFF_VIEW}")
                conn.exec_driver_sql(f"CREATE TABLE {RELADIFF_VIEW} AS {sql}")
                conn.exec_driver_sql(f"ALTER TABLE {RELADIFF_VIEW} ADD PRIMARY KEY (key)")
                conn.exec_driver_sql(f"ANALYZE {RELADIFF_VIEW}")
            views.append(engine)
            print(
                f"reladiff: {side} projection materialised in {time.perf_counter() - started:.1f} s"
            )
        settings = [
            ("defaults (1 thread, bisection threshold 16384, factor 32)", []),
            ("--threads 4", ["--threads", "4"]),
            ("--bisection-threshold 100000", ["--bisection-threshold", "100000"]),
        ]
        runs = []
        for label, extra in settings:
            command = [
                python,
                "-m",
                "reladiff",
                _reladiff_url(district_engine),
                RELADIFF_VIEW,
                _reladiff_url(state_engine),
                RELADIFF_VIEW,
                "-k",
                "key",
                "-c",
                "token",
                "--json",
                "--assume-unique-key",
                *extra,
            ]
            started = time.perf_counter()
            env = os.environ | {"COLUMNS": "100000"}  # as little wrapping as it allows
            proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
            seconds = time.perf_counter() - started
            if proc.returncode != 0:
                note = (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]
                runs.append((label, seconds, None, f"failed: {note}"))
                continue
            runs.append((label, seconds, _reladiff_sets(proc.stdout), ""))
        return runs
    finally:
        for engine in views:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {RELADIFF_VIEW}")


def _reladiff_sets(output: str) -> KeySets:
    """Key sets from reladiff's --json output: a stream of ``["-"|"+", [key, ...]]`` values
    (not one per line)."""
    minus: set[int] = set()
    plus: set[int] = set()
    # Its console wraps long lines at the terminal width, inside JSON strings too: JSON holds
    # no raw line breaks of its own, so drop them all.
    output = output.replace("\n", "")
    decoder = json.JSONDecoder()
    at = output.find("[")
    while at != -1:
        record, end = decoder.raw_decode(output, at)
        sign, values = record
        (minus if sign == "-" else plus).add(int(values[0]))
        at = output.find("[", end)
    return sets_from_two_differences(minus, plus)


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="demo folder (created)")
    parser.add_argument("--district-url", default=None)
    parser.add_argument("--state-url", default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="with URLs: trust that they hold DIR's demo"
    )
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="time ours, the read limit and EXCEPT N times each, keep the best",
    )
    parser.add_argument(
        "--no-pandas", action="store_true", help="skip the pandas full-load baseline"
    )
    parser.add_argument(
        "--reladiff",
        default=DEFAULT_RELADIFF if os.path.exists(DEFAULT_RELADIFF) else None,
        help="python of a virtual environment with reladiff and psycopg2",
    )
    parser.add_argument("--no-reladiff", action="store_true", help="skip reladiff")
    args = parser.parse_args()
    if bool(args.district_url) != bool(args.state_url):
        parser.error("give both --district-url and --state-url, or neither")
    directory = args.dir or Path(__file__).resolve().parent / "out" / f"demo-{args.persons}"
    directory.mkdir(parents=True, exist_ok=True)
    if demo_is_reusable(directory, args):
        print(f"reusing the demo in {directory}")
    else:
        build_demo(directory, args)
    manifest = DemoManifest.load(directory / "manifest.json")
    district_url = args.district_url or sqlite_url(directory / "district.db")
    state_url = args.state_url or sqlite_url(directory / "state.db")
    district_engine, state_engine = make_engine(district_url), make_engine(state_url)
    number = manifest.district_number
    person = get_object("PersonIdentity")
    rss_at_start = peak_rss_mb()
    load_at_start = os.getloadavg()

    def ours_person():
        return verify_object(
            district_engine, state_engine, person, number, chunk_rows=args.chunk_rows
        )

    def run_except():
        return except_baseline(
            Path(district_engine.url.database), Path(state_engine.url.database), person, number
        )

    def run_read():
        return read_baseline(district_engine, state_engine, person, number, args.chunk_rows)

    def run_digests():
        return digest_stream(district_engine, state_engine, person, number, args.chunk_rows)

    # Ours first, so that the process's peak RSS is its own.
    ours, ours_s = timed(ours_person)
    ours_rss = peak_rss_mb()
    enrollment, enrollment_s = timed(
        verify_object,
        district_engine,
        state_engine,
        get_object("Enrollment"),
        number,
        chunk_rows=args.chunk_rows,
    )
    enrollment_rss = peak_rss_mb()
    read_note, read_s = timed(run_read)
    read_rss = peak_rss_mb()
    digest_note, digest_s = timed(run_digests)
    digest_rss = peak_rss_mb()
    on_sqlite = district_engine.dialect.name == state_engine.dialect.name == "sqlite"
    except_sets = except_s = None
    if on_sqlite:
        except_sets, except_s = timed(run_except)
    except_rss = peak_rss_mb()
    # On a shared machine one run is noisy: --repeat alternates them and keeps the best.
    for _ in range(args.repeat - 1):
        ours_s = min(ours_s, timed(ours_person)[1])
        read_s = min(read_s, timed(run_read)[1])
        digest_s = min(digest_s, timed(run_digests)[1])
        if on_sqlite:
            except_s = min(except_s, timed(run_except)[1])

    rows = [("ours: PersonIdentity", ours_s, ours_rss, key_sets_of(ours), "")]
    rows.append(("read limit, compared rows", read_s, read_rss, None, read_note))
    rows.append(("digest stream, no merge", digest_s, digest_rss, None, digest_note))
    if on_sqlite:
        rows.append(("SQLite ATTACH + EXCEPT", except_s, except_rss, except_sets, ""))
    if not args.no_pandas:
        sets, pandas_s = timed(pandas_baseline, district_engine, state_engine, person, number)
        rows.append(("pandas full-load merge", pandas_s, peak_rss_mb(), sets, ""))
    on_pg = district_engine.dialect.name == state_engine.dialect.name == "postgresql"
    reladiff = []
    if args.reladiff and not args.no_reladiff and on_pg:
        reladiff = reladiff_runs(args.reladiff, district_engine, state_engine, person, number)
        for label, seconds, sets, note in reladiff:
            rows.append(
                (f"reladiff {label}", seconds, None, sets, note or "exact" if sets else note)
            )

    expected = tuple(manifest.keys("PersonIdentity", kind) for kind in KINDS)
    reference = key_sets_of(ours)
    print()
    print(
        f"PersonIdentity (whole object), district {number}: {ours.at_district:,} at district, "
        f"{ours.at_state:,} at state, errors "
        + ", ".join(f"{kind} {len(keys):,}" for kind, keys in zip(KINDS, reference, strict=True))
    )
    print(
        f"district {mask_url(district_url)} ({district_engine.dialect.name}) -> "
        f"state {mask_url(state_url)} ({state_engine.dialect.name})"
    )
    print(f"RSS before verifying (imports, engines): {rss_at_start:.0f} MB")
    print(
        "load average (1, 5, 15 min) at start: "
        + ", ".join(f"{x:.2f}" for x in load_at_start)
        + "; at end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    if reladiff:
        print(
            "reladiff 0.6 (hashdiff, checksum bisection) over a table (key, canonical text) "
            "of the whole object in each database, -k key -c token --assume-unique-key --json"
        )
    print()
    best = f" (best of {args.repeat})" if args.repeat > 1 else ""
    print(f"peak RSS is this process's peak so far (None: a subprocess); times{best}")
    print(f"{'method':<62}{'time s':>8}{'peak RSS MB':>13}  key sets")
    for name, seconds, rss, sets, note in rows:
        same = note if sets is None else "identical" if sets == reference else "DIFFERENT"
        shown_rss = "-" if rss is None else f"{rss:.0f}"
        print(f"{name:<62}{seconds:>8.2f}{shown_rss:>13}  {same}")
    print(
        f"{'ours: Enrollment':<62}{enrollment_s:>8.2f}{enrollment_rss:>13.0f}  "
        f"{enrollment.at_district:,} at district, {enrollment.errors:,} errors"
    )
    print()
    print(f"ratio ours / read limit of the compared rows: {ours_s / read_s:.2f} (target <= 1.0)")
    if except_s is not None:
        print(f"ratio ours / EXCEPT: {ours_s / except_s:.2f} (target <= 1.5)")
    exact = [seconds for _label, seconds, sets, _note in reladiff if sets == reference]
    if exact:
        print(f"reladiff best exact / ours: {min(exact) / ours_s:.1f}x (target >= 10)")
    print(f"peak RSS of ours: {ours_rss:.0f} MB (target < 150)")
    all_same = all(sets == reference for *_, sets, _note in rows if sets is not None)
    print(f"key sets identical across methods: {'yes' if all_same else 'NO'}")
    print(f"key sets equal to the demo manifest: {'yes' if reference == expected else 'NO'}")
    return 0 if all_same and reference == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
