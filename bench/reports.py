"""Benchmark the report renderers on big synthetic inputs (in memory, no database).

A Sync Request History of 10,000 IDs (half failed, with reasons) and a Verification Summary
with 5,000 record issues, each rendered as PDF and DOCX. Targets on the project machine:
PDF under 5 s, DOCX under 3 s each.

    .venv/bin/python bench/reports.py [--ids 10000] [--issues 5000] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import zipfile
from pathlib import Path

from selective_sync.models import (
    ColumnDiff,
    DistrictVerification,
    KeyOutcome,
    ObjectVerification,
    Outcome,
    RecordIssue,
    SyncResult,
)
from selective_sync.reports import (
    render_docx,
    render_pdf,
    sync_report_from_result,
    verification_report_from_result,
    write_verification_csv,
)

NOW = dt.datetime(2026, 11, 28, 20, 15, tzinfo=dt.UTC)
TARGETS = {"pdf": 5.0, "docx": 3.0}


def big_sync_result(n: int) -> SyncResult:
    """``n`` Enrollment IDs: half failed (missing parent), the rest synced, unchanged or
    not found; every tenth success synced its parent through check dependencies."""
    keys = []
    for i in range(n):
        key = 1_000_000 + i
        if i % 2:
            keys.append(
                KeyOutcome(
                    key,
                    Outcome.FAILED,
                    reason=f"parent PersonIdentity {500_000 + i // 3} is not at the state",
                    attempts=1,
                )
            )
        elif i % 10 == 0:
            keys.append(KeyOutcome(key, Outcome.SYNCED, parents_synced=[f"PersonIdentity {i}"]))
        elif i % 10 == 2:
            keys.append(KeyOutcome(key, Outcome.UNCHANGED))
        elif i % 10 == 4 and i % 100 == 4:
            keys.append(KeyOutcome(key, Outcome.NOT_FOUND))
        else:
            keys.append(KeyOutcome(key, Outcome.SYNCED))
    return SyncResult(
        object="Enrollment",
        district_number=275,
        district_name="MAPLE VALLEY",
        requested_by="jdoe",
        requested_at=NOW - dt.timedelta(minutes=5),
        completed_at=NOW - dt.timedelta(minutes=1),
        check_dependencies=True,
        dry_run=False,
        keys=keys,
    )


def big_verification(n: int) -> DistrictVerification:
    """``n`` record issues over two objects: a third missing, the rest mismatched on 1-2
    columns."""
    objects = []
    for obj, base, share in (("PersonIdentity", 100_000, n // 2), ("Enrollment", 2_000_000, n)):
        count = share if obj == "PersonIdentity" else n - n // 2
        issues, mas, mad, mis = [], [], [], []
        for i in range(count):
            key = base + i * 7
            kind = i % 6
            if kind == 0:
                issues.append(RecordIssue(key, "missing_at_state"))
                mas.append(key)
            elif kind == 1:
                issues.append(RecordIssue(key, "missing_at_district"))
                mad.append(key)
            else:
                diffs = [ColumnDiff("last_name", f"Smith-{i}", f"Smyth-{i}")]
                if kind == 5:
                    diffs.append(ColumnDiff("birth_date", dt.date(2010, 5, 1), None))
                issues.append(RecordIssue(key, "mismatched", tuple(diffs)))
                mis.append(key)
        objects.append(
            ObjectVerification(
                object=obj,
                district_number=275,
                verified_at=NOW,
                at_district=count * 40,
                at_state=count * 40 - len(mas) + len(mad),
                missing_at_state=mas,
                missing_at_district=mad,
                mismatched=mis,
                issues=issues,
            )
        )
    return DistrictVerification(275, "MAPLE VALLEY", objects)


def pdf_pages(path: Path) -> int:
    from pypdf import PdfReader

    return len(PdfReader(path).pages)


def docx_pages(path: Path) -> str:
    # Word computes pages at layout time; report the body size instead.
    with zipfile.ZipFile(path) as z:
        size = z.getinfo("word/document.xml").file_size
    return f"{size / 1e6:.1f} MB document.xml"


def timed(label: str, fmt: str, fn, path: Path) -> float:
    t0, c0 = time.perf_counter(), time.process_time()
    fn(path)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    pages = {"pdf": lambda: f"{pdf_pages(path)} pages", "docx": lambda: docx_pages(path)}.get(
        fmt, lambda: f"{path.stat().st_size / 1e6:.1f} MB"
    )()
    verdict = "ok" if seconds < TARGETS.get(fmt, 1e9) else "SLOW"
    # CPU time too: on a shared machine the wall time also measures the neighbours.
    print(f"{label:<30} {fmt:<5} {seconds:6.2f} s (cpu {cpu:5.2f} s)  {pages:<24} {verdict}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=10_000)
    parser.add_argument("--issues", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=None, help="keep the files here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="report-bench-"))
    out.mkdir(parents=True, exist_ok=True)

    # One-time costs (importing weasyprint, loading Pango and fonts) measured apart: a flow
    # or server pays them once per process, not per report.
    tiny = sync_report_from_result(big_sync_result(10), NOW)
    timed("startup (first, tiny report)", "pdf", lambda p: render_pdf(tiny, p), out / "tiny.pdf")
    timed("startup (first, tiny report)", "docx", lambda p: render_docx(tiny, p), out / "tiny.docx")

    sync = sync_report_from_result(big_sync_result(args.ids), NOW)
    ver = verification_report_from_result(big_verification(args.issues), NOW)
    sync_label = f"sync history, {args.ids:,} IDs"
    ver_label = f"verification, {args.issues:,} issues"
    timed(sync_label, "pdf", lambda p: render_pdf(sync, p), out / "sync.pdf")
    timed(sync_label, "docx", lambda p: render_docx(sync, p), out / "sync.docx")
    timed(ver_label, "pdf", lambda p: render_pdf(ver, p), out / "verification.pdf")
    timed(ver_label, "docx", lambda p: render_docx(ver, p), out / "verification.docx")
    timed(ver_label, "csv", lambda p: write_verification_csv(ver, p), out / "verification.csv")
    print(f"files in {out}")


if __name__ == "__main__":
    main()
