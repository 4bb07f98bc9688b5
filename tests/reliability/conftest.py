"""Every reliability test proves that no other district's rows changed.

A test registers each state database it uses with ``other_districts.watch(state_url)``;
the checksums of every row that does not belong to the synced district are taken then and
compared after the test. A reliability test that registers none fails: the check is the
point of the suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import tally
from helpers import rows_checksum
from sqlalchemy import create_engine, select

from selective_sync.schema import state_metadata


@dataclass
class OtherDistrictGuard:
    synced_district: int
    watched: list[tuple[str, dict[int, str]]] = field(default_factory=list)

    def watch(self, state_url: str, synced_district: int | None = None) -> None:
        """Checksum every other district's state rows now; compared after the test."""
        if synced_district is not None:
            self.synced_district = synced_district
        others = _other_districts(state_url, self.synced_district)
        if not others:
            raise AssertionError(f"{state_url}: no other district's rows to guard")
        self.watched.append((state_url, {d: rows_checksum(state_url, d) for d in others}))

    def verify(self) -> None:
        for url, before in self.watched:
            for number, checksum in before.items():
                tally.add("other_district_checks")
                assert rows_checksum(url, number) == checksum, (
                    f"district {number}'s state rows changed during a sync of "
                    f"district {self.synced_district}"
                )


def _other_districts(state_url: str, synced: int) -> list[int]:
    engine = create_engine(state_url)
    try:
        with engine.connect() as conn:
            column = state_metadata.tables["state_person"].c.district_number
            rows = conn.execute(select(column).distinct().where(column != synced))
            return sorted(r[0] for r in rows)
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def other_districts(request):
    """Autouse: every reliability test must watch its state database(s)."""
    from selective_sync.settings import DEMO_DISTRICT_NUMBER

    guard = OtherDistrictGuard(DEMO_DISTRICT_NUMBER)
    yield guard
    if not guard.watched:
        pytest.fail("a reliability test must call other_districts.watch(state_url)")
    guard.verify()


@pytest.fixture(scope="module")
def module_stack():
    """An ExitStack closed at the end of the module: databases entered into it outlive
    each test's ``other_districts`` check (function fixtures are torn down first)."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield stack
