"""The stored Verification Summary in the state database: what the flow stores the CLI
reads and the other way round, the newest result of each object wins whatever the order
of storing, and summaries stored as artifacts before are imported once."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys

from helpers import forget_summaries

from selective_sync.models import ColumnDiff, DistrictVerification, ObjectVerification, RecordIssue

DISTRICT = 275
NOWHERE = "http://127.0.0.1:9/api"
T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def cli_json(demo, args: list[str]) -> dict:
    """The CLI as a real process with no Prefect API to reach: its one JSON document."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SELECTIVE_SYNC_", "PREFECT_"))}
    env |= {"SELECTIVE_SYNC_DATA_DIR": str(demo.dir), "PREFECT_API_URL": NOWHERE}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (args, proc.stderr)
    return json.loads(proc.stdout)


def store():
    from selective_sync.verification.store import DatabaseSummaryStore

    return DatabaseSummaryStore()


def rename_at_district(demo, last_name: str) -> int:
    with sqlite3.connect(demo.dir / "district.db") as conn:
        (person,) = conn.execute("SELECT MAX(person_id) FROM person").fetchone()
        conn.execute(
            "UPDATE identity SET last_name = ? WHERE identity_id = "
            "(SELECT current_identity_id FROM person WHERE person_id = ?)",
            (last_name, person),
        )
    return person


def result(name: str, when: dt.datetime, mismatched: list[int], at: int = 10) -> ObjectVerification:
    issues = [
        RecordIssue(k, "mismatched", (ColumnDiff("last_name", f"A{k}", dt.date(2010, 5, 1)),))
        for k in mismatched
    ]
    return ObjectVerification(name, DISTRICT, when, at, at, mismatched=mismatched, issues=issues)


def summary(*objects: ObjectVerification, name: str = "MAPLE VALLEY") -> DistrictVerification:
    return DistrictVerification(DISTRICT, name, list(objects))


# ---------------------------------------------------------------- the store, no Prefect


def test_newest_result_per_object_wins_whatever_was_stored_last(demo):
    at = [T0 + dt.timedelta(minutes=m) for m in range(4)]
    s = store()
    assert s.load_latest_summary(DISTRICT) is None and not s.has_results(DISTRICT)
    newer = result("PersonIdentity", at[2], [5, 6])
    s.store(summary(newer, result("Enrollment", at[1], [])), "run-b")
    # An older result of PersonIdentity stored last (a run that verified earlier).
    s.store(summary(result("PersonIdentity", at[0], [5]), name="OLD NAME"), "run-a")
    s.store(summary(result("Graduation", at[3], [7])), "run-c")
    current = s.load_latest_summary(DISTRICT)
    assert [o.object for o in current.objects] == ["PersonIdentity", "Enrollment", "Graduation"]
    assert current.objects[0] == newer
    assert current.district_name == "MAPLE VALLEY"  # as the latest stored row names it
    trend = s.load_trend(DISTRICT)
    assert [r.run_id for r in trend.runs] == ["run-a", "run-b", "run-c"]  # by verification
    assert [sorted(r.counts) for r in trend.runs] == [
        ["PersonIdentity"],
        ["Enrollment", "PersonIdentity"],
        ["Graduation"],
    ]
    assert [r.run_id for r in s.load_trend(DISTRICT, runs=2).runs] == ["run-b", "run-c"]
    (district,) = s.load_state_summary().districts
    assert {o.object: o.errors for o in district.objects} == {
        "PersonIdentity": 2,
        "Enrollment": 0,
        "Graduation": 1,
    }


def test_a_run_stored_again_replaces_itself_and_old_issues_are_dropped(demo):
    from selective_sync.verification.records import KEEP_ISSUES

    s = store()
    s.store(summary(result("PersonIdentity", T0, [1])), "same")
    s.store(summary(result("PersonIdentity", T0, [1, 2])), "same")  # a retried store
    assert s.load_latest_summary(DISTRICT).objects[0].mismatched == [1, 2]
    for n in range(1, 5):
        s.store(summary(result("PersonIdentity", T0 + dt.timedelta(hours=n), [n])), f"r{n}")
    with sqlite3.connect(demo.dir / "state.db") as conn:
        with_issues = [
            r for (r,) in conn.execute("SELECT DISTINCT run_id FROM verification_issues")
        ]
        results = conn.execute("SELECT COUNT(*) FROM verification_result").fetchone()[0]
    assert sorted(with_issues) == ["r3", "r4"][-KEEP_ISSUES:]
    assert results == 5  # every result stays, for the trend
    assert len(s.load_trend(DISTRICT).runs) == 5
    assert s.load_latest_summary(DISTRICT).objects[0].mismatched == [4]


# ---------------------------------------------------------------- the flow and the CLI


def test_what_the_flow_stores_the_cli_reads_and_the_other_way_round(demo, admin, prefect_api):
    from flows.verification_summary import verification_summary

    forget_summaries(DISTRICT)
    try:
        by_flow = verification_summary(requested_by=admin)
        shown = cli_json(demo, ["summary", "--user", admin])
        assert shown["freshly_verified"] is False
        assert [(o["object"], o["verified_at"], o["errors"]) for o in shown["objects"]] == [
            (o.object, o.verified_at.isoformat(), o.errors) for o in by_flow.objects
        ]
        flow_person = by_flow.objects[0]
        assert shown["objects"][0]["mismatched"] == flow_person.mismatched

        renamed = rename_at_district(demo, "Stored-By-The-CLI")
        by_cli = cli_json(
            demo, ["summary", "--reverify", "--object", "PersonIdentity", "--user", admin]
        )
        cli_person = by_cli["objects"][0]
        assert renamed in cli_person["mismatched"]
        assert cli_person["errors"] == flow_person.errors + 1

        # The flow's next run verifies Enrollment only: PersonIdentity is the CLI's result.
        verification_summary(objects=["Enrollment"], requested_by=admin)
        current = store().load_latest_summary(DISTRICT, user=admin)
        person = current.objects[0]
        assert person.verified_at.isoformat() == cli_person["verified_at"]
        assert person.mismatched == cli_person["mismatched"]
        trend = store().load_trend(DISTRICT, user=admin)
        assert [sorted(r.counts) for r in trend.runs] == [
            ["Enrollment", "Graduation", "PersonIdentity"],
            ["PersonIdentity"],
            ["Enrollment"],
        ]
        # The flow's summary table in the UI shows the CLI's result too.
        from flows.verification_store import stored_rows

        rows, ui_rows = stored_rows(DISTRICT)
        assert rows == ui_rows
        assert {r["object"]: r["verified_at"] for r in ui_rows}["PersonIdentity"] == (
            cli_person["verified_at"]
        )
    finally:
        forget_summaries(DISTRICT)


def test_a_summary_stored_as_artifacts_before_is_imported_once(demo, admin, prefect_api):
    """Stored the way the flow stored it before the database held it (artifacts only)."""
    from prefect import flow
    from prefect.artifacts import create_table_artifact
    from prefect.runtime import flow_run

    from flows.verification_store import import_artifacts
    from selective_sync.db import make_engine
    from selective_sync.registry import get_object
    from selective_sync.verification.codec import (
        encode_summary,
        issues_key,
        merge_rows,
        summary_key,
    )
    from selective_sync.verification.engine import verify_object

    @flow(name="old-verification-summary")
    def old_summary(names: list[str], previous: list | None) -> list:
        engines = (make_engine(demo.district_url), make_engine(demo.state_url))
        verified = summary(*(verify_object(*engines, get_object(n), DISTRICT) for n in names))
        rows, chunks = encode_summary(verified, str(flow_run.get_id()))
        for chunk in chunks:
            create_table_artifact(key=issues_key(DISTRICT), table=chunk.table)
        merged = merge_rows(previous, rows)
        create_table_artifact(key=summary_key(DISTRICT), table=merged)
        return [verified, merged]

    forget_summaries(DISTRICT)
    try:
        first, rows = old_summary(["PersonIdentity", "Enrollment", "Graduation"], None)
        rename_at_district(demo, "Before-The-Import")
        second, _ = old_summary(["PersonIdentity"], rows)
        assert not store().has_results(DISTRICT)

        assert import_artifacts(DISTRICT) == 4  # three current results, one earlier
        current = store().load_latest_summary(DISTRICT, user=admin)
        assert current.objects == [second.objects[0], *first.objects[1:]]
        trend = store().load_trend(DISTRICT, user=admin)
        assert [sorted(r.counts) for r in trend.runs] == [
            ["Enrollment", "Graduation", "PersonIdentity"],
            ["PersonIdentity"],
        ]
        assert import_artifacts(DISTRICT) == 0  # once: the database holds the district now
        shown = cli_json(demo, ["summary", "--user", admin])
        assert shown["freshly_verified"] is False
        assert shown["objects"][0]["mismatched"] == second.objects[0].mismatched
    finally:
        forget_summaries(DISTRICT)
