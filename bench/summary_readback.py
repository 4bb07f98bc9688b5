"""Benchmark reading stored Verification Summaries from the state database (each object's
newest result) against the baseline of reading the latest artifact version only through
the Prefect API (the cheapest read the artifacts allowed, before the database held them).

``--districts`` districts each get ``--nights`` older three-object results, then a latest
one, stored both as artifacts on a temporary Prefect API (``prefect_test_harness``) and as
results in a temporary SQLite state database. With ``--concurrent``, every district's
latest result has a newer one stored just before it (the database's read must pick the
newer; the artifacts' latest version alone gets it wrong). Prints the median of
``--repeat`` timings of the state's view (every district) and of one district's summary
rows, and the ratio to the baseline.

    .venv/bin/python bench/summary_readback.py [--districts 200] [--nights 5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

OBJECTS = ("PersonIdentity", "Enrollment", "Graduation")


def rows(district: int, at: dt.datetime, run: str, errors: int) -> list[dict]:
    return [
        {
            "object": name,
            "accuracy": "",
            "verified_at": at.isoformat(),
            "distinct": 1000,
            "at_district": 1000,
            "at_state": 1000,
            "errors": errors,
            "missing_at_state": 0,
            "missing_at_district": 0,
            "mismatched": errors,
            "keys_requested": None,
            "district": district,
            "district_name": f"DISTRICT {district}",
            "issues_run": run,
            "issue_rows": 0,
            "format": 1,
        }
        for name in OBJECTS
    ]


def seed(numbers: list[int], nights: int, concurrent: bool) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    from selective_sync.db import make_engine
    from selective_sync.settings import get_settings
    from selective_sync.verification.codec import READ_BACK_MARGIN, summary_key
    from selective_sync.verification.records import insert_result

    now = dt.datetime.now(dt.UTC)
    later = now + READ_BACK_MARGIN + dt.timedelta(minutes=1)
    engine = make_engine(get_settings().resolved_state_url)
    with get_client(sync_client=True) as client, engine.begin() as conn:

        def store(number: int, version: list[dict]) -> None:
            client.create_artifact(
                artifact=ArtifactCreate(
                    key=summary_key(number), type="table", data=json.dumps(version)
                )
            )
            for row in version:
                insert_result(conn, row, [])

        for night in range(nights, 0, -1):
            for n in numbers:
                store(n, rows(n, now - dt.timedelta(days=night), f"night-{night}", night))
        for n in numbers:
            if concurrent:
                # A newer result stored first, then an older one: every version stored here
                # is within the margin, so the read-back reads them all (its worst case).
                store(n, rows(n, dt.datetime.now(dt.UTC), "concurrent", 1))
                store(n, rows(n, now, "latest", 0))
            else:
                store(n, rows(n, later, "latest", 0))
    engine.dispose()


def baseline_state(numbers: list[int]) -> dict:
    """The latest version of each district only (one call per 200 districts)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
        ArtifactCollectionFilterType,
    )

    from selective_sync.verification.codec import check_rows, summary_key

    keys = [summary_key(n) for n in numbers]
    found = {}
    with get_client(sync_client=True) as client:
        for start in range(0, len(keys), 200):
            for c in client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=keys[start : start + 200]),
                    type=ArtifactCollectionFilterType(any_=["table"]),
                ),
                limit=200,
            ):
                found[c.key] = check_rows(json.loads(c.data))
    return found


def baseline_district(number: int) -> list[dict]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from selective_sync.verification.codec import check_rows, summary_key

    with get_client(sync_client=True) as client:
        (latest,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[summary_key(number)])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return check_rows(json.loads(latest.data))


def median_seconds(fn, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--districts", type=int, default=200)
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrent", action="store_true")
    args = parser.parse_args()
    numbers = list(range(1001, 1001 + args.districts))
    with tempfile.TemporaryDirectory() as tmp:
        districts = Path(tmp) / "districts.yaml"
        districts.write_text(
            "districts:\n"
            + "".join(
                f"  - number: {n}\n    name: DISTRICT {n}\n    url: sqlite:///unused.db\n"
                for n in numbers
            )
        )
        os.environ["SELECTIVE_SYNC_DISTRICTS_FILE"] = str(districts)
        os.environ["SELECTIVE_SYNC_DATA_DIR"] = tmp
        from prefect.testing.utilities import prefect_test_harness

        from selective_sync.db import make_engine
        from selective_sync.initdb import create_state_schema
        from selective_sync.settings import get_settings
        from selective_sync.verification.store import DatabaseSummaryStore

        engine = make_engine(get_settings().resolved_state_url, must_exist=False)
        create_state_schema(engine)
        engine.dispose()
        with prefect_test_harness(server_startup_timeout=120):
            store = DatabaseSummaryStore()
            seed(numbers, args.nights, args.concurrent)
            state = store.load_state_summary()
            assert len(state.districts) == args.districts and not state.not_verified
            # The concurrent version's newer result wins; otherwise the latest version's.
            errors = args.districts * len(OBJECTS) * (1 if args.concurrent else 0)
            assert state.errors == errors, (state.errors, errors)
            figures = {
                "state_view_s": median_seconds(store.load_state_summary, args.repeat),
                "state_baseline_s": median_seconds(lambda: baseline_state(numbers), args.repeat),
                "district_s": median_seconds(lambda: store.latest_rows(numbers[0]), args.repeat),
                "district_baseline_s": median_seconds(
                    lambda: baseline_district(numbers[0]), args.repeat
                ),
            }
    versions = args.nights + 1 + int(args.concurrent)
    print(
        f"{args.districts} districts x {versions} stored versions"
        f"{' (a concurrent one beside each latest)' if args.concurrent else ''}, "
        f"median of {args.repeat}:"
    )
    for what in ("state", "district"):
        new, old = (
            figures[f"{what}_view_s" if what == "state" else "district_s"],
            figures[f"{what}_baseline_s"],
        )
        print(
            f"  {what:<8} database {new * 1000:8.1f} ms   artifacts, latest only "
            f"{old * 1000:8.1f} ms"
            f"   ratio {new / old:.2f}x"
        )


if __name__ == "__main__":
    main()
