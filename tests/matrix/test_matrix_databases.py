"""Schemas on every engine: the Alembic migrations, ``init-db``, and the demo's rows."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from selective_sync.db import make_engine
from selective_sync.demo import generate_demo
from selective_sync.errors import SchemaMissing
from selective_sync.initdb import (
    BASELINE,
    alembic_config,
    create_district_schema,
    create_state_schema,
    current_revision,
    head_revision,
    upgrade,
    version_table,
)
from selective_sync.schema import CODE_TABLES, district_metadata, state_metadata

from .conftest import database

KINDS = ["sqlite", "postgresql", "mariadb"]
METADATA = {"district": district_metadata, "state": state_metadata}


def schema_diffs(url: str, side: str) -> list:
    metadata = METADATA[side]
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, type_, _parents: (
                        type_ != "table" or name in metadata.tables
                    ),
                },
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", KINDS)
def test_migrations_build_exactly_the_schema_and_go_back(kind, tmp_path):
    with database(kind, tmp_path, "both") as url:
        # District and state in one database: each side keeps its own version table.
        for side in ("district", "state"):
            result = upgrade(url, side, districts={275: "MAPLE VALLEY"})
            assert result.before is None and not result.adopted
            assert result.after == head_revision(side)
            assert "schema created at revision" in result.describe()
            assert schema_diffs(url, side) == []
        assert {version_table("district"), version_table("state")} <= tables(url)
        engine = make_engine(url)
        try:
            assert current_revision(engine, "district") == head_revision("district")
            with engine.connect() as conn:
                state_codes = {
                    name: len(conn.execute(select(state_metadata.tables[name])).all())
                    for name in CODE_TABLES
                }
                districts = conn.execute(select(state_metadata.tables["state_district"])).all()
            assert state_codes == {name: len(codes) for name, codes in CODE_TABLES.items()}
            assert [tuple(r) for r in districts] == [(275, "MAPLE VALLEY")]

            again = upgrade(url, "state", districts={275: "MAPLE VALLEY", 312: "CEDAR FALLS"})
            assert again.before == again.after and "already at revision" in again.describe()

            # Down to nothing and up again, one side at a time.
            with engine.begin() as conn:
                command.downgrade(alembic_config("state", conn), "state@base")
            assert not tables(url) & set(state_metadata.tables)
            assert set(district_metadata.tables) <= tables(url)
            assert current_revision(engine, "state") is None
        finally:
            engine.dispose()
        assert upgrade(url, "state").after == head_revision("state")
        assert schema_diffs(url, "state") == []


@pytest.mark.parametrize("kind", KINDS)
def test_unversioned_tables_are_adopted_and_partial_ones_refused(kind, tmp_path):
    with database(kind, tmp_path, "old") as url, database(kind, tmp_path, "partial") as partial:
        engine = make_engine(url, must_exist=False)
        try:
            create_district_schema(engine)
            create_state_schema(engine, {275: "MAPLE VALLEY"})
        finally:
            engine.dispose()
        for side in ("district", "state"):
            result = upgrade(url, side)
            assert result.adopted and result.before is None
            assert result.after == head_revision(side)
            assert "existing tables adopted" in result.describe()
            assert upgrade(url, side).before == head_revision(side)
            assert schema_diffs(url, side) == []

        # An install from before the ledger (and the stored summary): adopted at the
        # baseline, then migrated.
        engine = make_engine(url, must_exist=False)
        try:
            with engine.begin() as conn:
                for name in (
                    "sync_key_outcome",
                    "sync_request",
                    "verification_issues",
                    "verification_result",
                    version_table("state"),
                ):
                    conn.execute(text(f"DROP TABLE {name}"))
        finally:
            engine.dispose()
        result = upgrade(url, "state")
        assert result.adopted and result.before is None
        assert result.after == head_revision("state")
        assert BASELINE["state"] == "state_0001"
        assert f"adopted, upgraded to revision {head_revision('state')}" in result.describe()
        assert schema_diffs(url, "state") == []

        engine = make_engine(partial, must_exist=False)
        try:
            district_metadata.tables["school"].create(engine)
        finally:
            engine.dispose()
        with pytest.raises(SchemaMissing, match="holds some of its tables but no version table"):
            upgrade(partial, "district")


@pytest.mark.parametrize("kind", KINDS)
def test_state_upgrade_from_the_ledger_revision_keeps_the_history(kind, tmp_path):
    """A state database at ``state_0002`` (the ledger, no stored summary) with a request in
    its ledger: upgraded, the request reads as before (a flow run's), and the summary's
    record takes a result; an unversioned one from that install is adopted at it."""
    import datetime as dt

    from selective_sync.ledger import finish_request, open_request, read_keys, read_request
    from selective_sync.models import (
        ColumnDiff,
        DistrictVerification,
        KeyOutcome,
        ObjectVerification,
        Outcome,
        RecordIssue,
        RequestStatus,
    )
    from selective_sync.schema import SUMMARY_TABLES
    from selective_sync.verification.records import load_summary, store_results

    when = dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    verified = DistrictVerification(
        275,
        "MAPLE VALLEY",
        [
            ObjectVerification(
                "PersonIdentity",
                275,
                when,
                10,
                9,
                mismatched=[7],
                issues=[RecordIssue(7, "mismatched", (ColumnDiff("birth_date", None, when),))],
            )
        ],
    )
    with database(kind, tmp_path, "previous") as url, database(kind, tmp_path, "old") as old:
        engine = make_engine(url, must_exist=False)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config("state", conn), "state_0002")
            assert "origin" not in {c["name"] for c in inspect(engine).get_columns("sync_request")}
            # A request as the flow recorded it then (the ledger's code knows no origin yet:
            # written with plain SQL, as that code wrote it).
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO sync_request (run_id, run_name, district_number, object, "
                        "requested_by, requested_at, status, check_dependencies, dry_run, "
                        "key_count, ids) VALUES ('0e9c5b1a-0000-4000-8000-000000000001', "
                        "'PersonIdentity x1 by alice', 275, 'PersonIdentity', 'alice', "
                        ":at, 'In Progress', :no, :no, 1, '7')"
                    ),
                    {"at": when.replace(tzinfo=None), "no": False},
                )
            result = upgrade(url, "state")
            assert (result.before, result.after) == ("state_0002", head_revision("state"))
            assert schema_diffs(url, "state") == []
            run_id = "0e9c5b1a-0000-4000-8000-000000000001"
            finish_request(
                engine,
                run_id,
                RequestStatus.COMPLETE,
                completed_at=when,
                outcomes=[("PersonIdentity", KeyOutcome(7, Outcome.SYNCED))],
            )
            request = read_request(engine, run_id)
            assert request.origin is None and request.has_flow_run
            assert (request.status, request.succeeded, request.keys) == ("Complete", 1, [7])
            assert [k.outcome for k in read_keys(engine, run_id)] == ["synced"]
            open_request(
                engine,
                run_id="0e9c5b1a-0000-4000-8000-000000000002",
                run_name="PersonIdentity x1 by bob",
                district=275,
                object_name="PersonIdentity",
                requested_by="bob",
                requested_at=when,
                check_dependencies=False,
                dry_run=False,
                keys=[7],
                origin="cli",
            )
            assert not read_request(engine, "0e9c5b1a-0000-4000-8000-000000000002").has_flow_run
            store_results(engine, verified, "run-1")
            assert load_summary(engine, 275) == verified
        finally:
            engine.dispose()

        # The same install's tables made without Alembic (no version table): adopted at
        # state_0002, then migrated.
        engine = make_engine(old, must_exist=False)
        try:
            create_state_schema(engine, {275: "MAPLE VALLEY"})
            with engine.begin() as conn:
                for name in sorted(SUMMARY_TABLES):
                    conn.execute(text(f"DROP TABLE {name}"))
                conn.execute(text("ALTER TABLE sync_request DROP COLUMN origin"))
        finally:
            engine.dispose()
        result = upgrade(old, "state")
        assert result.adopted and result.stamped == "state_0002"
        assert result.after == head_revision("state")
        assert schema_diffs(old, "state") == []


# ------------------------------------------------------------------ the CLI


def run_cli(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def cli_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELECTIVE_SYNC_")}
    env["SELECTIVE_SYNC_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    env.update({f"SELECTIVE_SYNC_{k.upper()}": v for k, v in settings.items()})
    return env


def test_init_db_on_two_vendors(tmp_path):
    pg, maria = database("postgresql", tmp_path, "d"), database("mariadb", tmp_path, "s")
    with pg as district, maria as state:
        env = cli_env(
            tmp_path,
            district_url=district,
            state_url=state,
            districts=json.dumps([{"number": 276, "name": "PINE HILL", "url": district}]),
        )
        first = run_cli(["init-db"], env)
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert lines[0].startswith("district database postgresql+psycopg://")
        assert lines[0].endswith("schema created at revision district_0001")
        assert lines[1].startswith("state database mysql+pymysql://")
        assert lines[1].endswith(f"schema created at revision {head_revision('state')}")
        assert lines[2] == "registered districts: 275 MAPLE VALLEY, 276 PINE HILL"
        assert len(lines) == 3  # the second district shares the first one's database

        second = run_cli(["init-db", "--side", "state"], env)
        assert second.returncode == 0, second.stderr
        head = head_revision("state")
        assert second.stdout.splitlines()[0].endswith(f"already at revision {head}")
        assert schema_diffs(district, "district") == []
        assert schema_diffs(state, "state") == []


def test_init_db_unreachable_server_is_one_masked_line(tmp_path):
    env = cli_env(tmp_path, state_url="postgresql+psycopg://someone:s3cret@127.0.0.1:9/statedb")
    proc = run_cli(["init-db", "--side", "state"], env)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "error: cannot reach the state database postgresql+psycopg://someone:***@127.0.0.1:9/statedb:"
    )
    assert "s3cret" not in proc.stderr


# ------------------------------------------------------------------ the demo on servers


def typed_digest(url: str, metadata) -> dict[str, str]:
    """A digest per table of the rows read through SQLAlchemy types (dates as ISO text)."""
    engine = create_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            for name, table in metadata.tables.items():
                digest = hashlib.sha256()
                for row in conn.execute(select(table).order_by(*table.primary_key.columns)):
                    values = tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in row)
                    digest.update(repr(values).encode())
                out[name] = digest.hexdigest()
    finally:
        engine.dispose()
    return out


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_server_demo_writes_the_sqlite_demos_rows(kind, tmp_path):
    reference = generate_demo(tmp_path / "sqlite", persons=300, seed=5)
    expected = typed_digest(f"sqlite:///{tmp_path / 'sqlite' / 'district.db'}", district_metadata)
    with database(kind, tmp_path, "d") as district, database(kind, tmp_path, "s") as state:
        manifest = generate_demo(
            tmp_path / kind, persons=300, seed=5, district_url=district, state_url=state
        )
        assert manifest.to_json() == reference.to_json()
        assert typed_digest(district, district_metadata) == expected
        # The state is versioned like init-db makes it, and holds the SQLite state's rows
        # (compared by verification, which the matrix runs; here: the row counts).
        assert schema_diffs(state, "state") == []
        engine = make_engine(state)
        sqlite_state = make_engine(f"sqlite:///{tmp_path / 'sqlite' / 'state.db'}")
        try:
            assert current_revision(engine, "state") == head_revision("state")
            for name, table in state_metadata.tables.items():
                with engine.connect() as a, sqlite_state.connect() as b:
                    count = select(table.c[table.primary_key.columns.keys()[0]])
                    assert len(a.execute(count).all()) == len(b.execute(count).all()), name
        finally:
            engine.dispose()
            sqlite_state.dispose()
