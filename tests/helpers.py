"""Test helpers: checksums of database contents, so 'nothing changed' is checked exactly."""

from __future__ import annotations

import hashlib

from sqlalchemy import create_engine, inspect, select

from selective_sync.rights import refusals_table
from selective_sync.schema import LEDGER_TABLES, SUMMARY_TABLES, state_metadata

REFUSALS_TABLE = refusals_table.name


def rows_checksum(url: str, district_number: int | None = None, tables=None) -> str:
    """sha256 over every row of the state's data tables (optionally one district's rows
    only); the ledger (what syncs recorded) and the stored Verification Summary (what
    verifications found) are not data and are left out."""
    engine = create_engine(url)
    digest = hashlib.sha256()
    try:
        with engine.connect() as conn:
            names = tables or sorted(
                n
                for n in inspect(conn).get_table_names()
                if n in state_metadata.tables and n not in LEDGER_TABLES | SUMMARY_TABLES
            )
            for name in names:
                table = state_metadata.tables[name]
                # Raw driver values: a hand-edited SQLite date ('2010-05-01 00:00:00') would
                # break SQLAlchemy's Date processor, and raw is what "unchanged" means anyway.
                order = ", ".join(c.name for c in table.primary_key.columns)
                where, params = "", ()
                if district_number is not None and "district_number" in table.c:
                    where, params = f" WHERE district_number = {_param(conn)}", (district_number,)
                rows = conn.exec_driver_sql(f"SELECT * FROM {name}{where} ORDER BY {order}", params)
                digest.update(name.encode())
                for row in rows:
                    digest.update(repr(tuple(row)).encode())
    finally:
        engine.dispose()
    return digest.hexdigest()


def whole_database_checksum(url: str, *, ledger: bool = True, refusals: bool = True) -> str:
    """sha256 over every row of every table (any schema); ``ledger=False`` leaves out the
    sync ledger's tables (a sync that changes no data still records what it did),
    ``refusals=False`` the refusal audit (a refused request records itself there)."""
    engine = create_engine(url)
    digest = hashlib.sha256()
    try:
        with engine.connect() as conn:
            for name in sorted(inspect(conn).get_table_names()):
                if not ledger and name in LEDGER_TABLES:
                    continue
                if not refusals and name == REFUSALS_TABLE:
                    continue
                digest.update(name.encode())
                quoted = conn.dialect.identifier_preparer.quote(name)
                rows = sorted(
                    repr(tuple(r)) for r in conn.exec_driver_sql(f"SELECT * FROM {quoted}")
                )
                for row in rows:
                    digest.update(row.encode())
    finally:
        engine.dispose()
    return digest.hexdigest()


def refusals_of(url: str, user: str | None = None) -> list[dict]:
    """The refusal audit's rows (of ``user``), oldest first, as dicts."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if REFUSALS_TABLE not in inspect(conn).get_table_names():
                return []
            rows = conn.execute(select(refusals_table).order_by(refusals_table.c.id)).mappings()
            return [dict(r) for r in rows if user is None or r["user_name"] == user]
    finally:
        engine.dispose()


def serve_two_districts(directory, patch) -> None:
    """Configure, through env (``patch``: a MonkeyPatch), the demo in ``directory`` with its
    second district served too (SELECTIVE_SYNC_DISTRICTS), as an installation serving two
    districts is."""
    import json
    import os

    from selective_sync.demo import demo_districts

    for name in list(os.environ):
        if name.startswith("SELECTIVE_SYNC_"):
            patch.delenv(name)
    patch.setenv("SELECTIVE_SYNC_DATA_DIR", str(directory))
    patch.setenv("SELECTIVE_SYNC_DISTRICTS", json.dumps(demo_districts(directory)))


def _param(conn) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def stored_summary_artifacts(client, district: int = 275) -> list:
    """Every Verification Summary artifact of ``district`` (the UI's view: tables and
    issues, every version), through the Prefect ``client``."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from selective_sync.verification.codec import issues_key, summary_key

    found = []
    for key in (summary_key(district), issues_key(district)):
        offset = 0
        while True:
            page = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                limit=200,
                offset=offset,
            )
            found.extend(page)
            if len(page) < 200:
                break
            offset += 200
    return found


def forget_summaries(district: int = 275) -> None:
    """Delete every Verification Summary artifact of ``district`` (the session's API is
    shared by every test, and every demo is district 275; the record, in each test's own
    state database, starts empty with the demo)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for artifact in stored_summary_artifacts(client, district):
            client.delete_artifact(artifact.id)


def logs_of(run_id: str) -> list[str]:
    """The messages of a flow run's log, as its run page shows them (the logs of runs in
    this process sent first)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run_id)]))
        )
    return [log.message for log in logs]
