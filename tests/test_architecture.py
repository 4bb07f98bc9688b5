"""The core package never imports Prefect: the CLI, flows and tests share plain functions."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import selective_sync


def test_core_modules_do_not_import_prefect():
    modules = [
        m.name
        for m in pkgutil.walk_packages(selective_sync.__path__, "selective_sync.")
        # Alembic's env script runs only inside Alembic; __main__ runs the CLI.
        if m.name != "selective_sync.cli.__main__" and ".migrations" not in m.name
    ]
    assert "selective_sync.verification.engine" in modules and "selective_sync.sync.copy" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(','.join(loaded))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"core imported Prefect: {proc.stdout[:300]}"
