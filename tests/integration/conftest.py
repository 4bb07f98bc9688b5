"""Integration fixtures: a real Prefect server per test module and a demo district copy
with its rights set up as an operator would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from .harness import ADMIN, PREFECT, DemoData, Server, clean_env, free_port, start, wait_healthy


@pytest.fixture(scope="module")
def server(tmp_path_factory, seed_prefect_home) -> Iterator[Server]:
    """``prefect server start`` on 127.0.0.1 and a free port, with a temporary PREFECT_HOME."""
    base = tmp_path_factory.mktemp("prefect-server")
    home, logdir = base / "home", base / "logs"
    seed_prefect_home(home)
    logdir.mkdir()
    port = free_port()
    env = clean_env(PREFECT_HOME=str(home))
    proc = start(
        "server",
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        logdir,
    )
    instance = Server(f"http://127.0.0.1:{port}", home, logdir, proc)
    try:
        wait_healthy(instance)
        yield instance
    finally:
        for child in reversed(instance.procs):
            child.stop()
        proc.stop()


@pytest.fixture(scope="module")
def demo_data(demo_template, tmp_path_factory) -> DemoData:
    """A copy of the demo, with the admin and the reconciliation requester as an operator
    would set them up (``selective-sync rights bootstrap`` / ``grant``)."""
    from selective_sync.rights import ALL_DISTRICTS, RightsStore
    from selective_sync.settings import sqlite_url

    directory = tmp_path_factory.mktemp("integration") / "data"
    shutil.copytree(demo_template, directory)
    with RightsStore(sqlite_url(directory / "rights.db"), create_missing=True) as store:
        store.bootstrap_admin(ADMIN)
        store.grant(ADMIN, "scheduled reconciliation", "W", district=ALL_DISTRICTS)
    manifest = json.loads((directory / "manifest.json").read_text())
    return DemoData(directory, manifest)
