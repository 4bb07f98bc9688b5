"""The rows a request plans from: district rows read ahead, and a batch's state snapshot.

District rows of many keys (and of their parents) are read with IN queries up front; in
batch mode the state's rows of the same keys are too, so that a key already equal costs
no query of its own (see ``writer.KeyWriter``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from ..registry import REGISTRY, ObjectSpec
from .connection import StateConnection, district_faults
from .plan import RowsByTable, read_district, read_state_many
from .retry import Retrier


@dataclass
class Planner:
    """Caches of one request's rows, by (object name, key)."""

    district_engine: Engine
    state: StateConnection
    district_number: int
    retrier: Retrier
    snapshot: bool = False
    """Batch mode: also read the state's rows of all keys up front."""
    district_rows: dict[tuple[str, int], RowsByTable | None] = field(default_factory=dict)
    state_rows: dict[tuple[str, int], RowsByTable] = field(default_factory=dict)

    def prefetch(self, spec: ObjectSpec, keys: list[int], with_parents: bool) -> None:
        """Read the district rows of many keys at once (and of their parents).

        Raises retry.Exhausted when a read spends its whole budget.
        """
        todo = [k for k in dict.fromkeys(keys) if (spec.name, k) not in self.district_rows]
        if not todo:
            return
        found, _ = self.retrier.call(
            f"reading {spec.name} keys at the district", lambda: self._read_district(spec, todo)
        )
        for k in todo:
            self.district_rows[(spec.name, k)] = found.get(k)
        if self.snapshot and found:
            state, _ = self.retrier.call(
                f"reading {spec.name} keys at the state", lambda: self._read_state(spec, found)
            )
            for k, rows in state.items():
                self.state_rows[(spec.name, k)] = rows
        if with_parents and spec.parent:
            pspec = REGISTRY[spec.parent.object]
            pkeys = [
                rows[spec.root][0][spec.parent.column]
                for rows in (found.get(k) for k in todo)
                if rows and rows[spec.root][0][spec.parent.column] is not None
            ]
            self.prefetch(pspec, pkeys, True)

    def district(self, spec: ObjectSpec, key: int) -> RowsByTable | None:
        """The key's district rows (None: not at the district), read now if not yet."""
        if (spec.name, key) not in self.district_rows:
            self.prefetch(spec, [key], False)
        return self.district_rows[(spec.name, key)]

    def take_snapshot(self, spec: ObjectSpec, key: int) -> RowsByTable | None:
        """The batch snapshot's state rows of the key, used once: a key given twice is
        read afresh the second time."""
        return self.state_rows.pop((spec.name, key), None)

    def _read_district(self, spec: ObjectSpec, keys: list[int]) -> dict[int, RowsByTable]:
        with district_faults("reading the district"), self.district_engine.connect() as conn:
            return read_district(conn, spec, keys)

    def _read_state(
        self, spec: ObjectSpec, found: dict[int, RowsByTable]
    ) -> dict[int, RowsByTable]:
        with self.state.guard("reading the state"):
            conn = self.state.get()
            with conn.begin():
                return read_state_many(conn, spec, self.district_number, found)
