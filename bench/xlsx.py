"""Benchmark the XLSX workbook of a Verification Summary against the CSV writer (baseline).

Workbooks of 5,000 and 100,000 record issues (keys with an issue; a mismatch can have
several differing columns, so a little more sheet rows), one third missing on a side, the
rest mismatched, with leading-zero state IDs, formula-looking names and non-Latin text among
the values. Each measurement runs in its own process so its peak RSS is its own; time is
for writing the file from the report model (the model is built first, as the flow has it).
Target: 100,000 record issues in under 10 s and under 500 MB peak RSS.

    .venv/bin/python bench/xlsx.py [--issues 5000 100000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOW = dt.datetime(2026, 11, 28, 20, 15, tzinfo=dt.UTC)
TARGET_SECONDS, TARGET_MB = 10.0, 500


def big_verification(n: int):
    """``n`` record issues over PersonIdentity and Enrollment."""
    from selective_sync.models import (
        ColumnDiff,
        DistrictVerification,
        ObjectVerification,
        RecordIssue,
    )

    objects = []
    for obj, base, count in (
        ("PersonIdentity", 100_000, n // 2),
        ("Enrollment", 2_000_000, n - n // 2),
    ):
        issues, lists = [], {"missing_at_state": [], "missing_at_district": [], "mismatched": []}
        for i in range(count):
            key = base + i * 7
            kind = i % 6
            if kind in (0, 1):
                issue = "missing_at_state" if kind == 0 else "missing_at_district"
                issues.append(RecordIssue(key, issue))
                lists[issue].append(key)
                continue
            diffs = [ColumnDiff("last_name", f"Smith-{i}", f"Smyth-{i}")]
            if kind == 3:
                diffs = [ColumnDiff("state_id", f"{i:09d}", f"{i + 1:09d}")]
            elif kind == 4 and i % 50 == 4:
                diffs = [ColumnDiff("last_name", f'=HYPERLINK("x{i}")', "Nguyễn 阮")]
            elif kind == 5:
                diffs.append(ColumnDiff("birth_date", dt.date(2010, 5, 1), None))
            issues.append(RecordIssue(key, "mismatched", tuple(diffs)))
            lists["mismatched"].append(key)
        objects.append(
            ObjectVerification(
                object=obj,
                district_number=275,
                verified_at=NOW,
                at_district=count * 40,
                at_state=count * 40
                - len(lists["missing_at_state"])
                + len(lists["missing_at_district"]),
                issues=issues,
                **lists,
            )
        )
    return DistrictVerification(275, "MAPLE VALLEY", objects)


def child(fmt: str, issues: int, out: Path) -> dict:
    """Build the report model, then write it once as ``fmt``; the figures as a dict."""
    from selective_sync.reports import verification_report_from_result, write_verification_csv
    from selective_sync.reports.xlsx import write_verification_xlsx

    report = verification_report_from_result(big_verification(issues), NOW)
    if fmt == "xlsx":
        import pandas  # noqa: F401  (imported before timing: a flow process has it loaded)
        import xlsxwriter  # noqa: F401
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write = write_verification_xlsx if fmt == "xlsx" else write_verification_csv
    t0, c0 = time.perf_counter(), time.process_time()
    write(report, out)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "fmt": fmt,
        "issues": issues,
        "rows": sum(len(o.lines) for o in report.issues),
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_mb": rss_before,
        "size_mb": out.stat().st_size / 1e6,
    }


def measure(fmt: str, issues: int, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", fmt, str(issues), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, nargs="+", default=[5_000, 100_000])
    parser.add_argument("--repeat", type=int, default=1, help="best of N (by wall time)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fmt, issues, out = args.child
        print(json.dumps(child(fmt, int(issues), Path(out))))
        return
    folder = Path(tempfile.mkdtemp(prefix="xlsx-bench-"))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"{'record issues':>13} {'rows':>8} {'fmt':<5} {'time':>8} {'cpu':>8} "
        f"{'peak RSS':>9} {'model':>7} {'file':>8}  ratio"
    )
    for issues in args.issues:
        best = {}
        for fmt in ("csv", "xlsx"):
            runs = [measure(fmt, issues, folder / f"v{issues}.{fmt}") for _ in range(args.repeat)]
            best[fmt] = min(runs, key=lambda r: r["seconds"])
        for fmt in ("csv", "xlsx"):
            r = best[fmt]
            ratio = r["seconds"] / best["csv"]["seconds"]
            verdict = ""
            if fmt == "xlsx" and issues >= 100_000:
                fast = r["seconds"] < TARGET_SECONDS and r["peak_mb"] < TARGET_MB
                verdict = "ok" if fast else "OVER TARGET"
            print(
                f"{r['issues']:>13,} {r['rows']:>8,} {fmt:<5} {r['seconds']:>6.2f} s "
                f"{r['cpu']:>6.2f} s {r['peak_mb']:>6.0f} MB {r['model_mb']:>4.0f} MB "
                f"{r['size_mb']:>5.1f} MB  {ratio:5.1f}x {verdict}"
            )
    print(f"files in {folder}")


if __name__ == "__main__":
    main()
