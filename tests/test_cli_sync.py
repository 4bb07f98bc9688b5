"""The command line without Prefect: a sync run here (no Prefect API reachable) gives the
flow's outcomes and history, and the commands people type most never import Prefect.

The comparisons run the same keys through both paths, each on its own copy of the same
demo: the ``selective-sync`` flow on a real Prefect API, the CLI as a real process told
an API address where nothing listens.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from helpers import rows_checksum

from selective_sync.models import Outcome

CLI = [sys.executable, "-m", "flows.cli"]
ABSENT = 999_999_999
NOWHERE = "http://127.0.0.1:9/api"  # the discard port: nothing answers
HEAVY = ("prefect", "pandas", "weasyprint", "docx", "openpyxl", "xlsxwriter", "jinja2")


def cli_env(directory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SELECTIVE_SYNC_", "PREFECT_"))}
    env |= {
        "SELECTIVE_SYNC_DATA_DIR": str(directory),
        "PREFECT_API_URL": NOWHERE,
        "COLUMNS": "200",
    }
    return env


def cli(args: list[str], directory, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        CLI + args, env=cli_env(directory), capture_output=True, text=True, timeout=120
    )
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def ledger(directory) -> tuple[list[tuple], dict[str, list[tuple]]]:
    """The ledger's requests (oldest first) and each one's key rows, read with sqlite3."""
    with sqlite3.connect(directory / "state.db") as conn:
        requests = conn.execute(
            "SELECT run_id, run_name, object, requested_by, status, key_count, succeeded, "
            "check_dependencies, dry_run, origin, completed_at FROM sync_request "
            "ORDER BY requested_at"
        ).fetchall()
        keys = {
            r[0]: conn.execute(
                "SELECT object, record_key, outcome, reason, attempts, parents_synced, "
                "written_at IS NOT NULL FROM sync_key_outcome WHERE run_id = ? "
                "ORDER BY object, record_key",
                (r[0],),
            ).fetchall()
            for r in requests
        }
    return requests, keys


def requests_to_make(demo) -> list[tuple[str, list[int], bool]]:
    """(object, keys, check dependencies): every outcome kind, a parent synced first."""
    person = demo.manifest["PersonIdentity"]
    will_fail = demo.manifest["will_fail"]["Enrollment"]
    with sqlite3.connect(demo.dir / "district.db") as conn:
        (parent,) = conn.execute(
            "SELECT person_id FROM enrollment WHERE enrollment_id = ?",
            (will_fail["parent_missing"][0],),
        ).fetchone()
    # Not the orphan enrollment's person (it must still be missing when that is asked), and
    # one the state accepts.
    refused = {
        k for keys in demo.manifest["will_fail"].get("PersonIdentity", {}).values() for k in keys
    }
    missing = next(k for k in person["missing_at_state"] if k != parent and k not in refused)
    return [
        ("PersonIdentity", [person["mismatched"][0], missing, ABSENT], False),
        ("PersonIdentity", [person["mismatched"][0]], False),  # now unchanged
        ("Enrollment", [will_fail["parent_missing"][0], will_fail["unmapped_code"][0]], False),
        ("Enrollment", [will_fail["parent_missing"][0]], True),
    ]


@pytest.fixture
def twin(demo, admin, tmp_path):
    """A second copy of this test's demo (the same rows, the same rights)."""
    directory = tmp_path / "twin"
    shutil.copytree(demo.dir, directory)
    return directory


def test_cli_sync_without_prefect_gives_the_flows_outcomes_and_history(
    demo, admin, twin, prefect_api
):
    from flows.sync_request import selective_sync

    made = requests_to_make(demo)
    by_cli = []
    for name, keys, parents_first in made:
        args = ["sync", name, ",".join(map(str, keys)), "--user", admin, "--json"]
        by_cli.append(json.loads(cli(args + ["--check-dependencies"] * parents_first, twin).stdout))
    by_flow = [
        selective_sync(object=name, ids=keys, requested_by=admin, check_dependencies=deps)
        for name, keys, deps in made
    ]

    for cli_result, flow_result in zip(by_cli, by_flow, strict=True):
        assert cli_result["records"] == {
            "succeeded": flow_result.succeeded,
            "total": flow_result.total,
        }
        assert cli_result["keys"] == [k.as_dict() for k in flow_result.keys]
    # Every kind of outcome was exercised, a parent synced first among them.
    kinds = {k["outcome"] for r in by_cli for k in r["keys"]}
    assert kinds == {o.value for o in Outcome}
    assert by_cli[-1]["keys"][0]["parents_synced"]

    # The same rows written at the state, the same ledger (but for the run ids and origin).
    assert rows_checksum(f"sqlite:///{twin / 'state.db'}") == rows_checksum(demo.state_url)
    cli_requests, cli_keys = ledger(twin)
    flow_requests, flow_keys = ledger(demo.dir)
    assert [r[2:9] for r in cli_requests] == [r[2:9] for r in flow_requests]
    assert [r[1] for r in cli_requests] == [r[1] for r in flow_requests]  # run names
    assert {r[9] for r in cli_requests} == {"cli"} and {r[9] for r in flow_requests} == {None}
    assert all(r[10] is not None for r in cli_requests)
    for cli_request, flow_request in zip(cli_requests, flow_requests, strict=True):
        assert cli_keys[cli_request[0]] == flow_keys[flow_request[0]]

    # The Sync History lists the CLI's requests as entries like any other.
    listed = json.loads(cli(["history", "list", "--json", "--user", admin], twin).stdout)
    assert [e["run_id"] for e in listed] == [r[0] for r in reversed(cli_requests)]
    assert [e["status"] for e in listed] == ["Complete"] * len(made)
    first = cli_requests[0][0]
    shown = json.loads(cli(["history", "show", first[:8], "--json", "--user", admin], twin).stdout)
    assert shown["outcomes"] == by_cli[0]["keys"]
    assert shown["records"] == by_cli[0]["records"] == {"succeeded": 2, "total": 3}


def test_cli_report_and_delete_of_its_own_request_need_no_server(demo, admin, tmp_path):
    from pypdf import PdfReader

    mismatched = demo.manifest["PersonIdentity"]["mismatched"][:2]
    keys = f"{mismatched[0]} {mismatched[1]} {ABSENT}"
    done = cli(["sync", "PersonIdentity", keys, "--user", admin], demo.dir)
    assert "Records 2/3" in done.stdout, done.stdout
    (request,), _ = ledger(demo.dir)
    run_id = request[0]

    pdf = tmp_path / "again.pdf"
    cli(["report", run_id[:8], "-o", str(pdf), "--user", admin], demo.dir)
    text = "".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert str(mismatched[0]) in text and str(ABSENT) in text and "2/3" in text.replace(" ", "")

    deleted = cli(["history", "delete", run_id[:8], "--user", admin], demo.dir)
    assert run_id in deleted.stdout
    assert ledger(demo.dir) == ([], {})
    listed = cli(["history", "list", "--user", admin], demo.dir)
    assert "No Sync History entries." in listed.stdout


def test_cli_sync_refusals_are_one_line_and_write_nothing(demo, admin):
    from helpers import whole_database_checksum

    before = whole_database_checksum(demo.state_url)
    for args, words in [
        (["sync", "PersonIdentity", "12, 12a, DROP", "--user", admin], ["12a", "DROP"]),
        (["sync", "PersonIdentity", "12", "--user", "nobody"], ["nobody", "W"]),
        (["sync", "Transcript", "12", "--user", admin], ["Transcript"]),
        (["sync", "PersonIdentity", "12", "--district", "999", "--user", admin], ["999"]),
    ]:
        proc = cli(args, demo.dir, check=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error:") and all(w in lines[0] for w in words), lines
    assert whole_database_checksum(demo.state_url) == before


def test_commands_people_type_most_never_import_prefect(demo, admin):
    """Each command runs in a fresh interpreter and says which heavy packages it loaded."""
    key = demo.manifest["PersonIdentity"]["mismatched"][0]
    cli(["sync", "PersonIdentity", str(key), "--user", admin], demo.dir)
    cli(["summary", "--user", admin], demo.dir)
    (request,), _ = ledger(demo.dir)
    commands = [
        ["history", "list"],
        ["history", "show", request[0][:8]],
        ["summary"],
        ["summary", "--trend"],
        ["find", "--last", "a"],
        ["find", "--from-summary", "mismatched", "--limit", "3"],
        ["sync", "PersonIdentity", str(key)],
    ]
    for args in commands:
        code = (
            "import sys\n"
            f"sys.argv = ['selective-sync', *{args!r}, '--user', {admin!r}]\n"
            "import flows.cli\n"
            "try:\n"
            "    flows.cli.main()\n"
            "except SystemExit as exc:\n"
            "    assert not exc.code, exc.code\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
            "print('LOADED', ','.join(heavy), file=sys.stderr)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=cli_env(demo.dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, (args, proc.stderr)
        loaded = proc.stderr.strip().splitlines()[-1]
        assert loaded == "LOADED", f"{args}: {loaded[:300]}"


def test_the_ui_shows_the_clis_requests_when_it_starts(demo, admin, prefect_api):
    """``selective-sync ui`` rewrites each district's View History table once its server
    answers (``Backend.refresh_ui``): a request the CLI ran with no API is listed, marked as
    the CLI's, with no link to a run page that does not exist."""
    import prefect.settings
    from prefect.artifacts import Artifact

    from flows.backend import PrefectBackend

    mismatched = demo.manifest["PersonIdentity"]["mismatched"][0]
    cli(["sync", "PersonIdentity", f"{mismatched} {ABSENT}", "--user", admin], demo.dir)
    (request,), _ = ledger(demo.dir)
    run_id, run_name = request[0], request[1]

    PrefectBackend().refresh_ui(prefect.settings.PREFECT_API_URL.value())
    table = Artifact.get("sync-history-275").data
    row = next(line for line in table.splitlines() if run_name in line)
    assert f"{run_name} (CLI)" in row and "| 1/2 |" in row and "Complete" in row
    # No run link (the CLI's request has no Prefect run); its reports are linked, made on
    # first open from the ledger.
    assert f"flow-run/{run_id}" not in table
    assert f"/reports/{run_id}.pdf" in row
    assert "selective-sync history show RUN" in table
