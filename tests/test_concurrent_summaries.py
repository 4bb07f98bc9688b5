"""Two Verification Summary runs of one district at once, on a real Prefect API: whatever
the interleaving, every object reads back with its newest verified result.

The runs are real flow runs in two threads. The interleaving is forced at the one point
every run passes between verifying and storing: its read of the stored summary
(``flows.verification_summary.latest_rows``, wrapped to wait after the real read).
"""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from helpers import forget_summaries, stored_summary_artifacts

from selective_sync.verification.codec import summary_key

pytestmark = pytest.mark.usefixtures("prefect_api")

DISTRICT = 275
WAIT = 120  # seconds a thread waits for its turn before the test fails (never hit when correct)

ADMIN = "test-admin"  # the admin fixture's user


@pytest.fixture(autouse=True)
def empty_store():
    """District 275 starts and ends with nothing stored (the API is the session's)."""
    forget_summaries(DISTRICT)
    yield
    forget_summaries(DISTRICT)


def run_summary(**kwargs):
    from flows.verification_summary import verification_summary

    kwargs.setdefault("requested_by", ADMIN)  # the admin fixture's user
    state = verification_summary(return_state=True, **kwargs)
    assert state.is_completed(), state.message
    return state.result()


class Runs:
    """Runs of the flow in threads, each told when to go on after its stored-summary read."""

    def __init__(self, monkeypatch):
        import flows.verification_summary as module

        self.real = module.latest_rows
        self.gates: dict[str, threading.Event | threading.Barrier] = {}
        self.read: dict[str, threading.Event] = {}
        self.results: dict[str, object] = {}
        self.errors: dict[str, BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}
        monkeypatch.setattr(module, "latest_rows", self._latest_rows)

    def _latest_rows(self, district):
        rows = self.real(district)  # the real read, against the real API
        name = threading.current_thread().name
        if name in self.read:
            self.read[name].set()
        gate = self.gates.get(name)
        if isinstance(gate, threading.Barrier):
            gate.wait(WAIT)
        elif gate is not None:
            assert gate.wait(WAIT), f"{name} was never let through"
        return rows

    def start(self, name: str, gate=None, **kwargs) -> None:
        if gate is not None:
            self.gates[name] = gate
        self.read[name] = threading.Event()

        def target() -> None:
            try:
                self.results[name] = run_summary(**kwargs)
            except BaseException as exc:  # reported by join()
                self.errors[name] = exc

        thread = threading.Thread(target=target, name=name, daemon=True)
        self.threads[name] = thread
        thread.start()

    def join(self, name: str):
        self.threads[name].join(WAIT)
        assert not self.threads[name].is_alive(), f"{name} did not end"
        if name in self.errors:
            raise self.errors[name]
        return self.results[name]


def by_object(summary):
    return {o.object: o for o in summary.objects}


def rename_at_district(demo, last_name: str) -> int:
    """Rename a person at the district: PersonIdentity gets one more mismatch."""
    with sqlite3.connect(demo.dir / "district.db") as conn:
        (person,) = conn.execute("SELECT MAX(person_id) FROM person").fetchone()
        conn.execute(
            "UPDATE identity SET last_name = ? WHERE identity_id = "
            "(SELECT current_identity_id FROM person WHERE person_id = ?)",
            (last_name, person),
        )
    return person


def latest_shown(district: int = DISTRICT) -> dict[str, dict]:
    """The rows of the summary version the UI shows (the key's latest artifact)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    with get_client(sync_client=True) as client:
        (latest,) = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(
                key=ArtifactCollectionFilterKey(any_=[summary_key(district)])
            )
        )
    data = json.loads(latest.data) if isinstance(latest.data, str) else latest.data
    return {r["object"]: r for r in data}


def assert_reads_back(expected: dict, admin) -> None:
    """Every reader gives each object ``expected[object]`` (an ObjectVerification)."""
    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database
    load_latest_summary, load_state_summary = (
        summaries.load_latest_summary,
        summaries.load_state_summary,
    )

    stored = by_object(load_latest_summary(DISTRICT, user=admin))
    for name, result in expected.items():
        assert stored[name] == result, name
    shown = latest_shown()
    for name, result in expected.items():
        assert shown[name]["verified_at"] == result.verified_at.isoformat(), name
        assert shown[name]["errors"] == result.errors, name
    (district,) = [d for d in load_state_summary(user=admin).districts if d.number == DISTRICT]
    figures = {o.object: o for o in district.objects}
    for name, result in expected.items():
        assert figures[name].verified_at == result.verified_at, name
        assert figures[name].errors == result.errors, name


def test_two_runs_of_different_objects_both_keep_their_results(demo, admin, monkeypatch):
    """Both runs read the stored summary before either stores: each stores the summary it
    read plus its own object, and neither may drop the other's."""
    first = by_object(run_summary())
    rename_at_district(demo, "Concurrent")
    runs = Runs(monkeypatch)
    both_read = threading.Barrier(2)
    runs.start("person", both_read, objects=["PersonIdentity"])
    runs.start("enrollment", both_read, objects=["Enrollment"])
    person = runs.join("person").objects[0]
    enrollment = runs.join("enrollment").objects[0]
    assert person.errors == first["PersonIdentity"].errors + 1  # really verified again
    assert person.verified_at > first["PersonIdentity"].verified_at
    assert enrollment.verified_at > first["Enrollment"].verified_at
    assert_reads_back(
        {
            "PersonIdentity": person,
            "Enrollment": enrollment,
            "Graduation": first["Graduation"],
        },
        admin,
    )
    # Neither run's own version holds both results: the UI's latest is the settled one,
    # attached to no run.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        versions = [
            a for a in stored_summary_artifacts(client, DISTRICT) if a.key == summary_key(DISTRICT)
        ]
    settled = [a for a in versions if a.flow_run_id is None]
    assert settled and all("settled after concurrent runs" in a.description for a in settled)
    assert len(versions) - len(settled) == 3  # one version per run


def test_an_older_result_stored_last_does_not_win(demo, admin, monkeypatch):
    """Run A verifies PersonIdentity, then waits; run B verifies it later (after a rename)
    and stores; A stores last. The newer result, B's, is the one read back."""
    first = by_object(run_summary())
    runs = Runs(monkeypatch)
    b_done = threading.Event()
    runs.start("older", b_done, objects=["PersonIdentity"])
    assert runs.read["older"].wait(WAIT)  # A has verified and read the stored summary
    rename_at_district(demo, "Newer")
    runs.start("newer", objects=["PersonIdentity", "Graduation"])
    newer = by_object(runs.join("newer"))
    b_done.set()
    older = by_object(runs.join("older"))
    assert older["PersonIdentity"].verified_at < newer["PersonIdentity"].verified_at
    assert newer["PersonIdentity"].errors == older["PersonIdentity"].errors + 1
    assert_reads_back(
        {
            "PersonIdentity": newer["PersonIdentity"],
            "Enrollment": first["Enrollment"],
            "Graduation": newer["Graduation"],
        },
        admin,
    )


def test_two_whole_runs_at_once_then_a_partial_one(demo, admin, monkeypatch):
    """Two full runs meet at the read; a later partial run still carries the newest of
    each object, and the trend has one point per run."""
    from selective_sync.verification.store import DatabaseSummaryStore

    summaries = DatabaseSummaryStore()  # the record: the state database
    load_trend = summaries.load_trend
    runs = Runs(monkeypatch)
    both_read = threading.Barrier(2)
    runs.start("one", both_read)
    runs.start("two", both_read)
    one, two = by_object(runs.join("one")), by_object(runs.join("two"))
    newest = {name: max(one[name], two[name], key=lambda o: o.verified_at) for name in one}
    assert_reads_back(newest, admin)
    rename_at_district(demo, "Later")
    later = by_object(run_summary(objects=["Graduation"]))
    assert_reads_back({**newest, "Graduation": later["Graduation"]}, admin)
    trend = load_trend(DISTRICT, user=admin)
    assert len(trend.runs) == 3
    assert len({r.run_id for r in trend.runs}) == 3
    assert [sorted(r.accuracy) for r in trend.runs] == [
        ["Enrollment", "Graduation", "PersonIdentity"],
        ["Enrollment", "Graduation", "PersonIdentity"],
        ["Graduation"],
    ]
    times = [r.verified_at for r in trend.runs]
    assert times == sorted(times)


# ---------------------------------------------------------------- the read-back, unit by unit


def _row(obj: str, at: str, run: str, errors: int = 0) -> dict:
    return {
        "object": obj,
        "accuracy": "",
        "verified_at": at,
        "distinct": 10,
        "at_district": 10,
        "at_state": 10,
        "errors": errors,
        "missing_at_state": 0,
        "missing_at_district": 0,
        "mismatched": errors,
        "keys_requested": None,
        "district": DISTRICT,
        "district_name": "MAPLE VALLEY",
        "issues_run": run,
        "issue_rows": errors,
        "format": 1,
    }


def test_newest_rows_and_where_the_read_back_starts():
    import datetime as dt

    from selective_sync.verification.codec import READ_BACK_MARGIN, newest_rows, read_back_from

    t = "2026-12-01T10:0{}:00+00:00".format
    # Run b verified PersonIdentity at 10:01, after a read that already held c's result of
    # 10:03: its own row replaces the newer one (its version keeps what it verified).
    b = [_row("PersonIdentity", t(1), "b", 1), _row("Enrollment", t(2), "a")]
    c = [_row("PersonIdentity", t(3), "c", 2), _row("Graduation", t(4), "c")]
    assert read_back_from(b, "b") == dt.datetime(2026, 12, 1, 10, 1, tzinfo=dt.UTC) - (
        READ_BACK_MARGIN
    )
    # A version attached to no run is a complete reading: up to its newest result.
    assert read_back_from(c, None) == dt.datetime(2026, 12, 1, 10, 4, tzinfo=dt.UTC) - (
        READ_BACK_MARGIN
    )
    current = {r["object"]: r for r in newest_rows([b, c])}
    assert list(current) == ["PersonIdentity", "Enrollment", "Graduation"]  # registry order
    assert current["PersonIdentity"]["issues_run"] == "c"
    assert current["Enrollment"]["issues_run"] == "a"
    # A tie keeps the newer version's row.
    tie = [_row("PersonIdentity", t(3), "d", 5)]
    assert newest_rows([tie, c])[0]["issues_run"] == "d"


def test_trend_one_point_per_run_in_verification_order():
    from selective_sync.verification.codec import trend_from_summaries

    t = "2026-12-01T10:0{}:00+00:00".format
    late_store = [_row("PersonIdentity", t(1), "a", 1), _row("Enrollment", t(2), "b")]
    early_store = [_row("PersonIdentity", t(0), "a0"), _row("Enrollment", t(2), "b")]
    settled = [_row("PersonIdentity", t(1), "a", 1), _row("Enrollment", t(2), "b")]
    # Newest first: a settled version (no run), run a stored after run b verified later.
    trend = trend_from_summaries(DISTRICT, [(None, settled), ("a", late_store), ("b", early_store)])
    assert [r.run_id for r in trend.runs] == ["a", "b"]
    assert [sorted(r.counts) for r in trend.runs] == [["PersonIdentity"], ["Enrollment"]]


def test_state_view_reads_back_beside_a_district_verified_long_ago(demo, admin, monkeypatch):
    """A district whose latest result is old next to one whose newer result was stored
    first: the state's view has the newest of each (results stored in the state database
    as two runs of a district and an old one of the other store them)."""
    import datetime as dt

    from selective_sync.db import make_engine
    from selective_sync.verification.records import insert_result
    from selective_sync.verification.store import DatabaseSummaryStore

    other = 276
    districts = demo.dir / "districts.yaml"
    districts.write_text(
        "districts:\n"
        f"  - number: {DISTRICT}\n    name: MAPLE VALLEY\n    url: {demo.district_url}\n"
        f"  - number: {other}\n    name: OLD OAK\n    url: {demo.district_url}\n"
    )
    monkeypatch.setenv("SELECTIVE_SYNC_DISTRICTS_FILE", str(districts))
    now = dt.datetime.now(dt.UTC)

    def at(minutes: float) -> str:
        return (now + dt.timedelta(minutes=minutes)).isoformat()

    def store(rows: list[dict]) -> None:
        engine = make_engine(demo.state_url)
        try:
            with engine.begin() as conn:
                for row in rows:
                    insert_result(conn, row, [])
        finally:
            engine.dispose()

    store([{**_row("Graduation", at(-60 * 24 * 30), "x", 3), "district": other}])
    # Run r2 (stored first, newer result), then run r1 (stored second, older result).
    store([_row("PersonIdentity", at(-2), "r2", 2), _row("Enrollment", at(-3), "p")])
    store([_row("PersonIdentity", at(-5), "r1", 1)])
    summary = {d.number: d for d in DatabaseSummaryStore().load_state_summary(user=admin).districts}
    person = {o.object: o for o in summary[DISTRICT].objects}["PersonIdentity"]
    assert person.errors == 2  # r2's newer result, not r1's stored last
    (graduation,) = summary[other].objects
    assert graduation.errors == 3
