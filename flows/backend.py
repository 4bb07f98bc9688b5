"""The CLI's backend on the Prefect API: the stores and flows behind ``selective_sync.cli``.

Everything is imported when first used: importing Prefect costs seconds, and a command such
as ``rights list`` never needs it. Prefect's own INFO logs (e.g. starting the ephemeral API,
every task run) would drown the CLI's output, so they are quieted first; the runs keep
every log line in the API.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any


def _quiet_import(module: str) -> ModuleType:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    return importlib.import_module(module)


class PrefectBackend:
    """``selective_sync.cli.backend.Backend`` on the Prefect API (ephemeral or a server)."""

    @property
    def history(self) -> Any:
        return _quiet_import("flows.history_store")

    @property
    def summaries(self) -> Any:
        return _quiet_import("flows.verification_store")

    def run_sync(self, **parameters: Any) -> Any:
        return _quiet_import("flows.sync_request").selective_sync(**parameters)

    def run_verification(self, **parameters: Any) -> Any:
        return _quiet_import("flows.verification_summary").verification_summary(**parameters)
