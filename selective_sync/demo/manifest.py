"""The manifest: every discrepancy the demo generator seeded, so tests know the truth."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..models import ISSUE_KINDS, IssueKind
from ..registry import REGISTRY

FAIL_REASONS: tuple[str, ...] = ("parent_missing", "unmapped_code")


def _empty_kinds() -> dict[str, dict[str, list[int]]]:
    return {name: {kind: [] for kind in ISSUE_KINDS} for name in REGISTRY}


def _empty_fails() -> dict[str, dict[str, list[int]]]:
    return {name: {reason: [] for reason in FAIL_REASONS} for name in REGISTRY}


@dataclass
class DemoManifest:
    """Seeded discrepancies per object and kind, and the keys the state will refuse."""

    district_number: int
    district_name: str
    persons: int
    seed: int
    issues: dict[str, dict[str, list[int]]] = field(default_factory=_empty_kinds)
    will_fail: dict[str, dict[str, list[int]]] = field(default_factory=_empty_fails)
    other_district: dict[str, Any] | None = None
    """With a database of the other district: its number, name, file and seeded drift."""

    def keys(self, object_name: str, kind: IssueKind) -> list[int]:
        """Keys of ``object_name`` seeded as ``kind`` (sorted)."""
        return self.issues[object_name][kind]

    def failing(self, object_name: str, reason: str) -> list[int]:
        """Keys of ``object_name`` the state will refuse for ``reason`` (sorted)."""
        return self.will_fail[object_name][reason]

    def issue_of(self, object_name: str, key: int) -> IssueKind | None:
        """The seeded kind of ``key``, or None when the key is identical on both sides."""
        for kind in ISSUE_KINDS:
            if key in self.issues[object_name][kind]:
                return kind
        return None

    def error_keys(self, object_name: str) -> list[int]:
        """Every key of ``object_name`` with a seeded discrepancy, sorted."""
        return sorted(k for kind in ISSUE_KINDS for k in self.issues[object_name][kind])

    def discrepancy_counts(self) -> dict[str, dict[str, int]]:
        """Per object, the number of keys of each kind."""
        return {
            name: {kind: len(keys) for kind, keys in kinds.items()}
            for name, kinds in self.issues.items()
        }

    def will_fail_counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {reason: len(keys) for reason, keys in reasons.items()}
            for name, reasons in self.will_fail.items()
        }

    def sort(self) -> None:
        for table in (self.issues, self.will_fail):
            for lists in table.values():
                for name, keys in lists.items():
                    lists[name] = sorted(keys)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "district": {"number": self.district_number, "name": self.district_name},
            "persons": self.persons,
            "seed": self.seed,
        }
        for name, kinds in self.issues.items():
            data[name] = {kind: sorted(kinds[kind]) for kind in ISSUE_KINDS}
        data["will_fail"] = {
            name: {reason: sorted(reasons[reason]) for reason in FAIL_REASONS}
            for name, reasons in self.will_fail.items()
        }
        if self.other_district is not None:
            data["other_district"] = self.other_district
        return data

    def to_json(self) -> str:
        # Compact: a million-person demo lists tens of thousands of keys.
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"

    def write(self, path: Path) -> None:
        """Write the manifest to ``path`` through a temporary file, so it is never partial."""
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemoManifest:
        try:
            manifest = cls(
                district_number=int(data["district"]["number"]),
                district_name=str(data["district"]["name"]),
                persons=int(data["persons"]),
                seed=int(data["seed"]),
                issues={
                    name: {kind: [int(k) for k in data[name][kind]] for kind in ISSUE_KINDS}
                    for name in REGISTRY
                    if name in data
                },
                will_fail={
                    name: {r: [int(k) for k in reasons.get(r, [])] for r in FAIL_REASONS}
                    for name, reasons in data["will_fail"].items()
                },
                other_district=data.get("other_district"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"not a demo manifest: missing or bad field {exc}") from exc
        manifest.sort()
        return manifest

    @classmethod
    def load(cls, path: Path | str) -> DemoManifest:
        """Read a manifest written by ``generate_demo``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise BadInput(f"no demo manifest at {path} (run `selective-sync demo`)") from exc
        except json.JSONDecodeError as exc:
            raise BadInput(f"demo manifest {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
