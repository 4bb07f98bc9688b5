"""Benchmark the streaming verification against baselines on the same demo databases.

    .venv/bin/python bench/verify.py --persons 1000000 [--dir DIR] [--seed S] [--repeat N]
                                     [--district-url U --state-url U [--reuse]]
                                     [--no-pandas]

Builds the demo (SQLite files in DIR, default bench/out/demo-<persons>; reused when DIR
already holds a demo of that size and seed; with URLs, rebuilt unless --reuse) in a child
process, so that its memory does not count here. Then, in this process: our PersonIdentity
verification first (its peak RSS is its own), our Enrollment verification, and the
baselines over the same normalised projection: the read limit (both sides' rows streamed
at once, exactly as verification reads them, and thrown away: no comparison at all),
SQLite ATTACH + EXCEPT both ways (SQLite only), and a pandas full-load merge (skipped with
--no-pandas). Any SQLAlchemy URLs work (PostgreSQL, MariaDB, SQLite files). Prints
times, the ratios ours/read and ours/EXCEPT, the process's peak RSS after each step and
whether all key sets agree (with each other and with the demo manifest). Writes nothing
outside DIR (and the databases at the URLs, whose demo rows it replaces).
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy.dialects import sqlite as sqlite_dialect

from selective_sync.db import make_engine, mask_url
from selective_sync.demo import DemoManifest
from selective_sync.registry import get_object
from selective_sync.settings import sqlite_url
from selective_sync.verification.engine import _side_chunks, verify_object
from selective_sync.verification.normalise import compared_select

KINDS = ("missing_at_state", "missing_at_district", "mismatched")
KeySets = tuple[list[int], list[int], list[int]]


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak of this process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def demo_is_reusable(directory: Path, args: argparse.Namespace) -> bool:
    # A server database may have changed since (nothing here can tell): rebuild unless told.
    if args.district_url and not args.reuse:
        return False
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


def literal_sql(spec, side: str, district_number: int, dialect) -> str:
    """Our normalised projection of one side as plain SQL (the baselines run the same)."""
    stmt = compared_select(spec, side, district_number, dialect.name)
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def except_baseline(district_db: Path, state_db: Path, spec, district_number: int) -> KeySets:
    """SQLite ATTACH + EXCEPT both ways over the same normalised projection."""
    dialect = sqlite_dialect.dialect()
    queries = {
        side: literal_sql(spec, side, district_number, dialect) for side in ("district", "state")
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
    """Load both sides whole with read_sql, outer-merge on the key, compare every column."""
    import pandas as pd  # imported late: its import alone would count in our peak RSS

    with district_engine.connect() as conn:
        district = pd.read_sql_query(
            literal_sql(spec, "district", district_number, district_engine.dialect), conn
        )
    with state_engine.connect() as conn:
        state = pd.read_sql_query(
            literal_sql(spec, "state", district_number, state_engine.dialect), conn
        )
    merged = district.merge(state, on="key", how="outer", suffixes=("_d", "_s"), indicator=True)
    only_d = merged.loc[merged["_merge"] == "left_only", "key"]
    only_s = merged.loc[merged["_merge"] == "right_only", "key"]
    both = merged[merged["_merge"] == "both"]
    differs = pd.Series(False, index=both.index)
    for column in district.columns.drop("key"):
        left, right = both[f"{column}_d"], both[f"{column}_s"]
        differs |= ~((left == right) | (left.isna() & right.isna()))
    mismatched = both.loc[differs, "key"]
    return (
        sorted(int(k) for k in only_d),
        sorted(int(k) for k in only_s),
        sorted(int(k) for k in mismatched),
    )


def read_baseline(district_engine, state_engine, spec, district_number, chunk_rows) -> str:
    """The read limit: stream both sides' rows as verification reads them, compare nothing.

    The same SQL (the packed normalised projection, ordered by key), the same server-side
    cursors and chunk size, both sides at once in two threads (as verification reads
    ahead on servers); rows are counted and dropped. Verification cannot be faster.
    """
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def drain(engine, side: str) -> None:
        try:
            chunks = _side_chunks(engine, spec, side, district_number, None, chunk_rows)
            counts[side] = sum(len(chunk) for chunk in chunks)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=drain, args=(district_engine, "district")),
        threading.Thread(target=drain, args=(state_engine, "state")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return f"{counts['district']:,} + {counts['state']:,} rows read"


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
        "--reuse", action="store_true", help="with URLs: trust that they still hold the demo"
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

    def ours_person():
        return verify_object(
            district_engine, state_engine, person, number, chunk_rows=args.chunk_rows
        )

    def run_except():
        return except_baseline(
            Path(district_engine.url.database), Path(state_engine.url.database), person, number
        )

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

    def run_read():
        return read_baseline(district_engine, state_engine, person, number, args.chunk_rows)

    read_note, read_s = timed(run_read)
    read_rss = peak_rss_mb()
    on_sqlite = district_engine.dialect.name == state_engine.dialect.name == "sqlite"
    except_sets = except_s = None
    if on_sqlite:
        except_sets, except_s = timed(run_except)
    except_rss = peak_rss_mb()
    # On a shared machine one run is noisy: --repeat alternates them and keeps the best.
    for _ in range(args.repeat - 1):
        ours_s = min(ours_s, timed(ours_person)[1])
        read_s = min(read_s, timed(run_read)[1])
        if on_sqlite:
            except_s = min(except_s, timed(run_except)[1])

    rows = [("ours: PersonIdentity", ours_s, ours_rss, key_sets_of(ours))]
    rows.append(("read limit (no compare)", read_s, read_rss, None))
    if on_sqlite:
        rows.append(("SQLite ATTACH + EXCEPT", except_s, except_rss, except_sets))
    if not args.no_pandas:
        sets, pandas_s = timed(pandas_baseline, district_engine, state_engine, person, number)
        rows.append(("pandas full-load merge", pandas_s, peak_rss_mb(), sets))

    expected = tuple(manifest.keys("PersonIdentity", kind) for kind in KINDS)
    reference = key_sets_of(ours)
    print()
    print(
        f"PersonIdentity, district {number}: {ours.at_district:,} at district, "
        f"{ours.at_state:,} at state, errors "
        + ", ".join(f"{kind} {len(keys):,}" for kind, keys in zip(KINDS, reference, strict=True))
    )
    print(
        f"district {mask_url(district_url)} ({district_engine.dialect.name}) -> "
        f"state {mask_url(state_url)} ({state_engine.dialect.name})"
    )
    print(f"RSS before verifying (imports, engines): {rss_at_start:.0f} MB")
    print()
    best = f" (best of {args.repeat})" if args.repeat > 1 else ""
    print(f"peak RSS is the process's peak so far; times of ours, read and EXCEPT{best}")
    print(f"{'method':<26}{'time s':>9}{'peak RSS MB':>13}  key sets")
    for name, seconds, rss, sets in rows:
        same = read_note if sets is None else "identical" if sets == reference else "DIFFERENT"
        print(f"{name:<26}{seconds:>9.2f}{rss:>13.0f}  {same}")
    print(
        f"{'ours: Enrollment':<26}{enrollment_s:>9.2f}{enrollment_rss:>13.0f}  "
        f"{enrollment.at_district:,} at district, {enrollment.errors:,} errors"
    )
    print()
    print(f"ratio ours / read limit: {ours_s / read_s:.2f} (target <= 2)")
    if except_s is not None:
        print(f"ratio ours / EXCEPT: {ours_s / except_s:.2f} (target <= 1.5)")
    print(f"peak RSS of ours: {ours_rss:.0f} MB (target < 250)")
    all_same = all(sets == reference for *_, sets in rows if sets is not None)
    print(f"key sets identical across methods: {'yes' if all_same else 'NO'}")
    print(f"key sets equal to the demo manifest: {'yes' if reference == expected else 'NO'}")
    return 0 if all_same and reference == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
