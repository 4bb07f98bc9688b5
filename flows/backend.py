"""The CLI's backend on the Prefect API: what ``selective_sync.cli`` needs Prefect for.

Everything is imported when first used: importing Prefect costs seconds, and the commands
people type most (sync, history, summary, find) never need it. Prefect's own INFO logs
would drown the CLI's output, so they are quieted first.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


def _quiet_import(module: str) -> ModuleType:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    return importlib.import_module(module)


class PrefectBackend:
    """``selective_sync.cli.backend.Backend`` on the Prefect API (a server, or ephemeral)."""

    def flow_runs(self) -> Any:
        return _quiet_import("flows.history_store").PrefectRuns()

    def refresh_ui(self, api_url: str) -> None:
        settings = _quiet_import("prefect.settings")
        with settings.temporary_settings(updates={settings.PREFECT_API_URL: api_url}):
            history = _quiet_import("flows.history_store")
            summaries = _quiet_import("flows.verification_store")
            for number in history.served_districts():
                try:
                    summaries.import_artifacts(number)
                except Exception as exc:  # the next verification-summary run tries again
                    log.warning(
                        "district %s: summaries stored as artifacts not imported: %s", number, exc
                    )
            history.refresh_tables()
