"""The database matrix: every core suite over district → state pairs of real engines.

Pairs: sqlite→sqlite, postgresql→postgresql, mariadb→mariadb, postgresql→mariadb and
mariadb→postgresql. Each module that asks for ``pair_demo`` gets, per pair, its own
freshly created databases (``server_database``: unique names, dropped afterwards; SQLite
files in a temporary folder) holding a small demo generated once. The servers are started
when they are not running; under ``CI=true`` an unreachable server fails the test, it is
never skipped. Only the plain core functions run here (no Prefect), to keep it fast.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbservers import server_database
from sqlalchemy import Engine

from selective_sync.db import make_engine
from selective_sync.demo import DemoManifest, generate_demo
from selective_sync.settings import sqlite_url

PAIRS: list[tuple[str, str]] = [
    ("sqlite", "sqlite"),
    ("postgresql", "postgresql"),
    ("mariadb", "mariadb"),
    ("postgresql", "mariadb"),
    ("mariadb", "postgresql"),
]
PAIR_IDS = [f"{d}-to-{s}" for d, s in PAIRS]

PERSONS = 240
SEED = 11


@dataclass
class PairDemo:
    district_kind: str
    state_kind: str
    district_url: str
    state_url: str
    district: Engine
    state: Engine
    manifest: DemoManifest

    @property
    def number(self) -> int:
        return self.manifest.district_number


@contextmanager
def database(kind: str, folder: Path, name: str):
    """A new empty database of ``kind``; its URL. Dropped (or deleted) afterwards."""
    if kind == "sqlite":
        yield sqlite_url(folder / f"{name}.db")
        return
    with server_database(kind) as url:
        yield url


@pytest.fixture(scope="module", params=PAIRS, ids=PAIR_IDS)
def pair_demo(request, tmp_path_factory):
    """Per module and pair: new databases with a demo of ``PERSONS`` persons."""
    district_kind, state_kind = request.param
    folder = tmp_path_factory.mktemp(f"{district_kind}-{state_kind}")
    with ExitStack() as stack:
        district_url = stack.enter_context(database(district_kind, folder, "district"))
        state_url = stack.enter_context(database(state_kind, folder, "state"))
        manifest = generate_demo(
            folder,
            persons=PERSONS,
            seed=SEED,
            district_url=None if district_kind == "sqlite" else district_url,
            state_url=None if state_kind == "sqlite" else state_url,
        )
        district, state = make_engine(district_url), make_engine(state_url)
        stack.callback(district.dispose)
        stack.callback(state.dispose)
        yield PairDemo(
            district_kind, state_kind, district_url, state_url, district, state, manifest
        )
