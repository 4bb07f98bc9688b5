"""Shared fixtures: a demo district made once per session and copied per test, and a real
Prefect API (prefect_test_harness) started once per session for the flow tests."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect_db import small_ca_file

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Every Prefect client loads its CA file (certifi's 150 roots: 27 ms of CPU) though the
# tests' APIs are plain http on loopback; the suite makes thousands of clients. Set before
# Prefect is imported; subprocesses inherit it.
os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", str(small_ca_file()))

import flows.cli  # noqa: E402, F401  (the in-process CLI gets its Prefect backend, as the entry point does)

DEMO_PERSONS = 400
ADMIN = "test-admin"


@dataclass
class Demo:
    dir: Path
    manifest: dict

    @property
    def district_url(self) -> str:
        return f"sqlite:///{self.dir / 'district.db'}"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.dir / 'state.db'}"


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """A small demo generated once; tests copy it so each gets its own databases."""
    from selective_sync.demo import generate_demo

    directory = tmp_path_factory.mktemp("demo-template")
    generate_demo(directory, persons=DEMO_PERSONS, seed=7)
    return directory


@pytest.fixture
def demo(demo_template, tmp_path, monkeypatch) -> Demo:
    """This test's own copy of the demo, configured through SELECTIVE_SYNC_* env vars."""
    directory = tmp_path / "data"
    shutil.copytree(demo_template, directory)
    for name in list(os.environ):
        if name.startswith("SELECTIVE_SYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SELECTIVE_SYNC_DATA_DIR", str(directory))
    manifest = json.loads((directory / "manifest.json").read_text())
    return Demo(directory, manifest)


@pytest.fixture(scope="session")
def two_district_template(tmp_path_factory) -> Path:
    """The demo with its second district's own database (district-312.db), generated once."""
    from selective_sync.demo import generate_demo

    directory = tmp_path_factory.mktemp("two-district-template")
    generate_demo(directory, persons=DEMO_PERSONS, seed=7, other_district_db=True)
    return directory


@pytest.fixture
def two_districts(two_district_template, tmp_path, monkeypatch) -> Demo:
    """This test's own copy of the two-district demo: 275 MAPLE VALLEY (the default) and
    312 CEDAR FALLS, each with its district database, one state database."""
    directory = tmp_path / "data"
    shutil.copytree(two_district_template, directory)
    from helpers import serve_two_districts

    serve_two_districts(directory, monkeypatch)
    manifest = json.loads((directory / "manifest.json").read_text())
    return Demo(directory, manifest)


@pytest.fixture
def admin(demo) -> str:
    """A user holding every right in this test's rights store."""
    from selective_sync.rights import RightsStore

    with RightsStore.from_settings() as store:
        store.bootstrap_admin(ADMIN)
    return ADMIN


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory, migrated_prefect_db):
    """A real Prefect API for the whole session: Prefect's ``prefect_test_harness``, its
    server started on a copy of an already migrated database (migrating a new one costs its
    server about 20 CPU-s), with no flow-run heartbeats (each in-process run would wait up to
    a second at its end for the heartbeat thread; nothing here watches for zombies).

    Yields the path of the server's SQLite database, for tests that check what Prefect
    stored without asking its API."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing import utilities
    from prefect_db import HARNESS_DB_FILE, seed_file

    folder = tmp_path_factory.mktemp("prefect-api")
    seed_file(migrated_prefect_db, folder / HARNESS_DB_FILE)
    patch = pytest.MonkeyPatch()
    # The harness makes its database in a new temporary folder: this one, already seeded.
    patch.setattr(utilities, "mkdtemp", lambda: str(folder))
    try:
        with (
            utilities.prefect_test_harness(server_startup_timeout=120),
            temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        ):
            yield folder / HARNESS_DB_FILE
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def migrated_prefect_db(tmp_path_factory) -> Path:
    """An empty Prefect database already migrated, made once for the whole run
    (tests/prefect_db.py)."""
    from prefect_db import migrated_template

    base = tmp_path_factory.getbasetemp()
    # pytest-xdist workers each have a folder of their own in the run's folder.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return migrated_template(shared)


@pytest.fixture(scope="session")
def seed_prefect_home(migrated_prefect_db):
    """``seed_prefect_home(home)`` puts an empty, already migrated Prefect database in
    ``home`` before a test starts a Prefect server there (tests/prefect_db.py)."""
    from prefect_db import seed_home

    return lambda home: seed_home(migrated_prefect_db, Path(home))


# Folders whose tests are slow (real servers, kills, whole matrices): `pytest -m "not slow"`
# leaves them out for a fast local loop; CI runs everything.
SLOW_FOLDERS = ("integration", "matrix", "reliability", "security")
_uses_servers: dict[str, bool] = {}


def _module_uses_servers(path: Path) -> bool:
    """A module that asks for a PostgreSQL/MariaDB database (tests/dbservers.py)."""
    key = str(path)
    if key not in _uses_servers:
        text = path.read_text(encoding="utf-8")
        _uses_servers[key] = "server_database" in text or "dbservers" in text
    return _uses_servers[key]


def pytest_collection_modifyitems(config, items):
    """Mark every test by what it needs: `servers`, `prefect_api`, `slow` (see pyproject)."""
    for item in items:
        path = Path(str(item.fspath))
        folders = set(path.relative_to(Path(__file__).parent).parts[:-1])
        if folders & set(SLOW_FOLDERS):
            item.add_marker(pytest.mark.slow)
        if "prefect_api" in item.fixturenames or "integration" in folders:
            item.add_marker(pytest.mark.prefect_api)
        if "matrix" in folders or "integration" in folders or _module_uses_servers(path):
            item.add_marker(pytest.mark.servers)
    # The longest files first (pytest-xdist, with --no-loadscope-reorder in pyproject, hands
    # files out in this order): otherwise the files with one long test come last and the
    # run ends on one worker waiting for them.
    here = Path(__file__).parent
    files = [Path(str(item.fspath)).relative_to(here).as_posix() for item in items]
    counts = Counter(files)
    weight = {f: LONG_FILES.get(f, counts[f]) for f in counts}
    order = sorted(range(len(items)), key=lambda i: -weight[files[i]])
    items[:] = [items[i] for i in order]


# Seconds a file took on four workers (7 December 2026, --durations); others count 1 s a test.
LONG_FILES = {
    "security/test_rights_matrix.py": 300,
    "integration/test_browser.py": 200,
    "test_history.py": 170,
    "reliability/test_transient_faults.py": 160,
    "reliability/test_crash.py": 130,
    "integration/test_deployments.py": 120,
    "reliability/test_concurrency.py": 120,
    "integration/test_alerts.py": 110,
    "test_flow_sync.py": 90,
    "test_cli_sync.py": 80,
    "integration/test_nightly_pool.py": 60,
    "reliability/test_database_down.py": 40,
    "integration/test_serve.py": 40,
    "integration/test_warm_start.py": 40,
    "security/test_gateway.py": 50,
    "integration/test_prefect_on_postgres.py": 35,
    "security/test_masking.py": 30,
}


def pytest_sessionfinish(session):
    """A pytest-xdist worker sends its tally to the controller, which prints it."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        import tally

        output["tally"] = tally.totals()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller adds each worker's tally (pytest-xdist's hook)."""
    import tally

    tally.merge(getattr(node, "workeroutput", {}).get("tally", {}))


def pytest_terminal_summary(terminalreporter):
    """Print what the reliability and security suites tried (tests/tally.py)."""
    import tally

    lines = tally.report_lines()
    if not lines:
        return
    terminalreporter.section("reliability and security tally")
    for line in lines:
        terminalreporter.line(line)
    path = tally.write_file()
    terminalreporter.line(f"(written to {path})")
