"""The command line as a person uses it: real processes, real SQLite files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "flows.cli"]


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        CLI + args, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def clean_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELECTIVE_SYNC_")}
    env["SELECTIVE_SYNC_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    return env


def test_demo_then_summary_json_matches_manifest(clean_env, tmp_path):
    # The summary is verified and stored here, in the state database: no Prefect API.
    clean_env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # nothing listens there
    run(["demo", "--persons", "300", "--seed", "3"], clean_env)
    run(["rights", "bootstrap", "tester"], clean_env)
    data = tmp_path / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    summary = json.loads(
        run(["summary", "--reverify", "--json", "--user", "tester"], clean_env).stdout
    )
    assert summary["district"]["number"] == 275
    assert summary["district"]["name"] == "MAPLE VALLEY"
    by_object = {o["object"]: o for o in summary["objects"]}
    assert set(by_object) == {"PersonIdentity", "Enrollment", "Graduation"}
    for name, entry in by_object.items():
        for kind in ("missing_at_state", "missing_at_district", "mismatched"):
            assert entry[kind] == manifest[name][kind], (name, kind)
        errors = sum(
            len(entry[k]) for k in ("missing_at_state", "missing_at_district", "mismatched")
        )
        assert entry["errors"] == errors
        assert entry["distinct"] == entry["at_district"] + len(entry["missing_at_district"])
        # Rounded down to the hundredth, as every output prints it.
        expected = (entry["distinct"] - errors) * 10_000 // entry["distinct"] / 100
        assert entry["accuracy"] == expected
    table = run(["summary", "--object", "enrollment", "--user", "tester"], clean_env).stdout
    assert "Verification Summary" in table and "Enrollment" in table
    assert "PersonIdentity" not in table


def test_demo_honours_dir_option(clean_env, tmp_path):
    target = tmp_path / "elsewhere"
    run(["demo", "--dir", str(target), "--persons", "50"], clean_env)
    assert (target / "district.db").exists() and (target / "manifest.json").exists()
    assert not (tmp_path / "data").exists()


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:"), proc.stderr
    return lines[0]


def test_unknown_object_is_refused(clean_env):
    run(["demo", "--persons", "50"], clean_env)
    line = one_error_line(run(["summary", "--object", "Transcript"], clean_env, check=False))
    assert "Transcript" in line and "PersonIdentity" in line


def test_missing_demo_databases_are_named(clean_env, tmp_path):
    line = one_error_line(run(["summary"], clean_env, check=False))
    assert "district.db" in line and "does not exist" in line
    assert not (tmp_path / "data").exists()


def test_unreachable_database_url(clean_env):
    run(["demo", "--persons", "50"], clean_env)
    clean_env["SELECTIVE_SYNC_DISTRICT_URL"] = (
        "postgresql+psycopg://nobody:s3cret@127.0.0.1:1/nowhere"
    )
    line = one_error_line(run(["summary"], clean_env, check=False))
    assert "cannot reach the district database" in line
    assert "s3cret" not in line and "***" in line


def test_missing_tables_are_named(clean_env, tmp_path):
    empty = tmp_path / "empty.db"
    import sqlite3

    sqlite3.connect(empty).close()
    run(["demo", "--persons", "50"], clean_env)
    clean_env["SELECTIVE_SYNC_STATE_URL"] = f"sqlite:///{empty}"
    line = one_error_line(run(["summary"], clean_env, check=False))
    assert "missing tables" in line and "state_person" in line


def test_unwritable_data_dir(clean_env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = one_error_line(
        run(["demo", "--dir", str(blocker / "sub"), "--persons", "50"], clean_env, check=False)
    )
    assert str(blocker) in line
    assert blocker.read_text() == "not a directory"


def test_bad_option_value_exits_nonzero(clean_env):
    proc = run(["demo", "--persons", "0"], clean_env, check=False)
    assert proc.returncode != 0 and "persons" in proc.stderr
    assert not Path(clean_env["SELECTIVE_SYNC_DATA_DIR"]).exists()
