"""The CLI at 80 columns (an SSH terminal, a pipe): every table is readable, no cell is cut
to "…", no line is wider than the terminal. Real processes (``python -m flows.cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "flows.cli"]
WIDTH = 80
USER = "narrow-admin"


def run(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_readable(output: str) -> None:
    assert "…" not in output, output
    too_wide = [line for line in output.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide


@pytest.fixture
def narrow_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELECTIVE_SYNC_")}
    env.update(
        SELECTIVE_SYNC_DATA_DIR=str(tmp_path / "data"),
        COLUMNS=str(WIDTH),
        # These commands need no Prefect API: nothing listens at this one.
        PREFECT_API_URL="http://127.0.0.1:9/api",
    )
    run(["demo", "--persons", "300", "--seed", "3"], env)
    run(["rights", "bootstrap", USER], env)
    return env


def test_tables_at_80_columns(narrow_env, tmp_path):
    env = narrow_env
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())

    summary = run(["summary", "--reverify", "--user", USER], env)
    assert_readable(summary)
    for name in ("PersonIdentity", "Enrollment", "Graduation", "Missing at district"):
        assert name in summary, summary

    mismatched = manifest["PersonIdentity"]["mismatched"][:2]
    ids = [str(k) for k in mismatched] + ["999999999"]
    synced = run(["sync", "PersonIdentity", *ids, "--user", USER], env)
    assert_readable(synced)
    assert "Records 2/3" in synced and "not_found" in synced

    listing = run(["history", "list", "--user", USER], env)
    assert_readable(listing)
    entries = json.loads(run(["history", "list", "--json", "--user", USER], env))
    mine = next(e for e in entries if e["requested_by"] == USER)
    assert mine["run_id"][:8] in listing and "2/3" in listing

    shown = run(["history", "show", mine["run_id"], "--user", USER], env)
    assert_readable(shown)
    assert all(k in shown for k in ids) and "not_found" in shown

    found = run(
        ["find", "--object", "Enrollment", "--from-summary", "mismatched", "--user", USER], env
    )
    assert_readable(found)
    for key in manifest["Enrollment"]["mismatched"][:3]:
        assert str(key) in found, found
