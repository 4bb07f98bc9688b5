"""What the reliability tests share: demo databases on servers, per-key snapshots of the
state, the expected outcome of every key, and the "fully synced or untouched" check.

Everything here reads the real databases; nothing is mocked. A key is judged on every
row of every table its object carries (the registry's parts), raw as the driver returns
it, so a key that is half written (some of its rows changed, not all) is seen.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import tally
from dbservers import server_database
from sqlalchemy import Engine, bindparam, select, update

from selective_sync.db import make_engine
from selective_sync.demo import generate_demo
from selective_sync.models import Outcome
from selective_sync.registry import get_object
from selective_sync.schema import district_metadata
from selective_sync.sync.plan import part_infos, plan_changes, read_district, read_state_many

DISTRICT = 275
ADMIN = "test-admin"
SUCCEEDED = {Outcome.SYNCED, Outcome.UNCHANGED}

KeyRows = dict[str, tuple]
"""One key's state rows: per carried table, its rows (raw tuples, sorted)."""


# ---------------------------------------------------------------- databases


@dataclass
class Databases:
    """A district and a state database holding a demo, and how to reach them."""

    kind: str
    district_url: str
    state_url: str
    manifest: dict
    folder: Path

    def engines(self) -> tuple[Engine, Engine]:
        return make_engine(self.district_url), make_engine(self.state_url)

    def env(self, **extra: str) -> dict[str, str]:
        """The SELECTIVE_SYNC_* settings that point the flows at these databases."""
        env = {"SELECTIVE_SYNC_DATA_DIR": str(self.folder)}
        if self.kind != "sqlite":
            env["SELECTIVE_SYNC_DISTRICT_URL"] = self.district_url
            env["SELECTIVE_SYNC_STATE_URL"] = self.state_url
        env.update((f"SELECTIVE_SYNC_{k.upper()}", v) for k, v in extra.items())
        return env

    def configure(self, monkeypatch, **extra: str) -> None:
        """Point the flows run in this process at these databases (and nothing else)."""
        for name in list(os.environ):
            if name.startswith("SELECTIVE_SYNC_"):
                monkeypatch.delenv(name)
        for name, value in self.env(**extra).items():
            monkeypatch.setenv(name, value)

    def bootstrap_admin(self) -> str:
        from selective_sync.rights import RightsStore

        with RightsStore.from_settings() as store:
            store.bootstrap_admin(ADMIN)
        return ADMIN


@contextmanager
def demo_databases(kind: str, folder: Path, persons: int = 400, seed: int = 7):
    """A demo in new databases of ``kind`` (``sqlite`` files, or on the server)."""
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if kind == "sqlite":
            urls: tuple[str | None, str | None] = (None, None)
        else:
            urls = (
                stack.enter_context(server_database(kind)),
                stack.enter_context(server_database(kind)),
            )
        generate_demo(folder, persons=persons, seed=seed, district_url=urls[0], state_url=urls[1])
        manifest = json.loads((folder / "manifest.json").read_text())
        district_url = urls[0] or f"sqlite:///{folder / 'district.db'}"
        state_url = urls[1] or f"sqlite:///{folder / 'state.db'}"
        yield Databases(kind, district_url, state_url, manifest, folder)


def refused_keys(manifest: dict, object_name: str) -> set[int]:
    """Keys the state refuses whatever happens (unmapped code, parent missing)."""
    will_fail = manifest["will_fail"].get(object_name, {})
    return set(will_fail.get("unmapped_code", [])) | set(will_fail.get("parent_missing", []))


def district_keys(dbs: Databases, object_name: str) -> list[int]:
    """Every key of ``object_name`` at the district, sorted."""
    spec = get_object(object_name)
    info = part_infos(spec)[0]
    engine = make_engine(dbs.district_url)
    try:
        with engine.connect() as conn:
            column = info.district.c[info.part.link]
            return sorted(r[0] for r in conn.execute(select(column)))
    finally:
        engine.dispose()


def edit_at_district(dbs: Databases, person_ids: Iterable[int], token: str) -> None:
    """Hand-edit every identity row (current and history) of these persons at the district,
    so each key has several rows to write: a key half written would show."""
    table = district_metadata.tables["identity"]
    engine = make_engine(dbs.district_url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(
                select(table.c.identity_id).where(table.c.person_id.in_(list(person_ids)))
            ).all()
            conn.execute(
                update(table)
                .where(table.c.identity_id == bindparam("iid"))
                .values(middle_name=bindparam("middle")),
                [{"iid": r[0], "middle": f"{token}{r[0]}"} for r in rows],
            )
    finally:
        engine.dispose()


# ---------------------------------------------------------------- per-key state


def state_rows(dbs: Databases, object_name: str, keys: Iterable[int]) -> dict[int, KeyRows]:
    """Every state row each key carries (every table of its object), raw and sorted."""
    wanted = set(keys)
    spec = get_object(object_name)
    engine = make_engine(dbs.state_url)
    result: dict[int, dict[str, list]] = {k: {} for k in wanted}
    try:
        with engine.connect() as conn:
            for info in part_infos(spec):
                # Raw values, as the driver gives them (no type processing).
                rows = conn.exec_driver_sql(
                    f"SELECT * FROM {info.state.name} WHERE district_number = {DISTRICT}"
                )
                link = list(rows.keys()).index(info.part.link)
                for row in rows:
                    if row[link] in wanted:
                        result[row[link]].setdefault(info.name, []).append(repr(tuple(row)))
    finally:
        engine.dispose()
    return {k: {t: tuple(sorted(v)) for t, v in tables.items()} for k, tables in result.items()}


def keys_in_sync(dbs: Databases, object_name: str, keys: Iterable[int]) -> dict[int, bool]:
    """Per key: the state holds exactly the district's rows of every carried table (the
    sync's own plan finds nothing to write); a key absent at the district has no row at
    the state either."""
    spec = get_object(object_name)
    keys = list(keys)
    district, state = dbs.engines()
    try:
        with district.connect() as dconn:
            found = read_district(dconn, spec, keys)
        with state.connect() as sconn:
            at_state = read_state_many(sconn, spec, DISTRICT, found)
    finally:
        district.dispose()
        state.dispose()
    absent = [k for k in keys if k not in found]
    nowhere = {k for k, rows in state_rows(dbs, object_name, absent).items() if not rows}
    return {
        k: (k in nowhere) if k not in found else not plan_changes(spec, k, found[k], at_state[k])
        for k in keys
    }


def expected_outcomes(
    dbs: Databases, object_name: str, keys: list[int], refused: set[int]
) -> dict[int, Outcome]:
    """What each key must end as, decided before the run from the databases themselves."""
    in_sync = keys_in_sync(dbs, object_name, keys)
    at_district = set(district_keys(dbs, object_name))
    expected = {}
    for k in keys:
        if k not in at_district:
            expected[k] = Outcome.NOT_FOUND
        elif k in refused:
            expected[k] = Outcome.FAILED
        else:
            expected[k] = Outcome.UNCHANGED if in_sync[k] else Outcome.SYNCED
    return expected


def verify(dbs: Databases, object_name: str, keys: list[int]):
    from selective_sync.verification.engine import verify_object

    district, state = dbs.engines()
    try:
        return verify_object(district, state, get_object(object_name), DISTRICT, keys)
    finally:
        district.dispose()
        state.dispose()


@dataclass
class Judgement:
    """Per key after a fault: fully synced, untouched, or neither (lost / half-written)."""

    synced: set[int] = field(default_factory=set)
    untouched: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)


def judge_keys(
    dbs: Databases, object_name: str, before: dict[int, KeyRows], keys: list[int]
) -> Judgement:
    """Each key is fully synced (equal to the district) or untouched (equal to its rows
    before the run); anything else is counted in the tally as a lost row."""
    after = state_rows(dbs, object_name, keys)
    in_sync = keys_in_sync(dbs, object_name, keys)
    verdict = Judgement()
    for k in keys:
        if in_sync[k]:
            verdict.synced.add(k)
        elif after[k] == before[k]:
            verdict.untouched.add(k)
        else:
            verdict.lost.add(k)
    tally.add("keys_checked", len(keys))
    tally.add("rows_lost", len(verdict.lost))
    return verdict


def ledger_disagreements(
    dbs: Databases, object_name: str, run_id: str, before: dict[int, KeyRows], keys: list[int]
) -> set[int]:
    """Keys where the ledger and the data disagree: the keys the ledger marks written by
    ``run_id`` must be exactly those whose state rows differ from ``before``. Tallied."""
    from selective_sync.ledger import read_keys

    engine = make_engine(dbs.state_url)
    try:
        recorded = read_keys(engine, run_id)
    finally:
        engine.dispose()
    written = {r.key for r in recorded if r.object == object_name and r.written_at is not None}
    after = state_rows(dbs, object_name, keys)
    changed = {k for k in keys if after[k] != before[k]}
    disagreeing = written ^ changed
    tally.add("ledger_keys_checked", len(keys))
    tally.add("ledger_rows_disagreeing", len(disagreeing))
    return disagreeing


# ---------------------------------------------------------------- running things


class Background(threading.Thread):
    """A thread that keeps its exception for the test to re-raise. The session's Prefect
    API is a process-wide setting, so a flow run from the thread talks to it too."""

    def __init__(self, target: Callable[[], object], name: str):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.result: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # re-raised by outcome()
            self.error = exc

    def outcome(self, timeout: float = 300):
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not finish in {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


@contextmanager
def running(*threads: Background, first: Callable[[], object] | None = None) -> Iterator[None]:
    """Start the threads; on the way out, even after a failure, call ``first`` (e.g. let go
    of held locks) and wait for them: no run outlives its test, its databases, its settings."""
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        if first is not None:
            first()
        for thread in threads:
            thread.join(300)


def run_flow(object_name: str, ids, **kwargs):
    """Run the selective-sync flow in this process; its final state (never raises)."""
    from flows.sync_request import selective_sync

    return selective_sync(
        object=object_name, ids=ids, requested_by=ADMIN, return_state=True, **kwargs
    )


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    step=0.05,
    explain: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(step)


@contextmanager
def pg_admin(state_url: str) -> Iterator:
    """An autocommit connection to the PostgreSQL server's maintenance database."""
    from dbservers import _connect_admin

    conn = _connect_admin("postgresql")
    try:
        yield conn
    finally:
        conn.close()


def database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database
