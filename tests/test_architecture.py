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
        # Alembic's env script runs only inside Alembic.
        if ".migrations" not in m.name
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


def test_core_never_imports_the_orchestration_layer():
    """Every import statement of the core (module level or inside a function): none names
    ``flows``, ``tasks`` or ``prefect``; the CLI is handed its backend by ``flows.cli``."""
    import ast
    from pathlib import Path

    root = Path(selective_sync.__file__).parent
    forbidden = ("flows", "tasks", "prefect", "prefect_dask")
    found = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(root)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in forbidden
            ]
    assert len(list(root.rglob("*.py"))) > 40
    assert found == [], "the core imports the orchestration layer:\n" + "\n".join(found)
