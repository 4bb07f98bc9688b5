"""The rights matrix: every right set against every action, through every entry point.

Right sets: none (an unknown user), R, W, D, RW, RD. Actions: the Sync History API
functions, the flows (selective-sync, verification-summary, delete-history-entry,
clear-sync-history; reconcile runs as its fixed requester) and the CLI commands (sync,
history list/show/delete/clear, report). Each cell is expected allowed or refused from the
table below (W counts as R; D does not), and a refusal must change nothing: the state and
district databases, the rights store, the Prefect runs and artifacts behind the history,
and ``history list``. test_rights.py covers the rights store and ``selective-sync rights``
itself; test_history.py some of the history refusals; this is the full table.

A refused *selective-sync* run is itself a Failed Sync History entry (the design counts a
refused request as one that could not be processed; test_history checks its content):
there the check is that it is the only new thing, with no artifact and no write.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tally
from helpers import whole_database_checksum

from selective_sync.rights import RightsError
from selective_sync.settings import sqlite_url

from .conftest import cli_in_process, run_flow

ADMIN = "matrix-admin"
USERS = {"nobody": "", "rita": "R", "walt": "W", "dora": "D", "wendy": "RW", "rhoda": "RD"}

# action -> the right it needs (the table the matrix is built from).
ACTIONS = {
    "api-list": "R",
    "api-show": "R",
    "api-delete": "D",
    "api-clear": "D",
    "flow-sync": "W",
    "flow-verify": "R",
    "flow-delete": "D",
    "flow-clear": "D",
    "cli-sync": "W",
    "cli-history-list": "R",
    "cli-history-show": "R",
    "cli-report": "R",
    "cli-history-delete": "D",
    "cli-history-clear": "D",
}


def allowed(rights: str, needed: str) -> bool:
    held = set(rights) | ({"R"} if "W" in rights else set())
    return needed in held


# The flows make the same ``require`` call the API functions and the CLI make, and each
# flow run costs a second or two: they get the four single right sets (none, R, W, D),
# which already cover "W reads, D does not"; the API and the CLI get every set.
FLOW_USERS = ("nobody", "rita", "walt", "dora")

CELLS = [
    pytest.param(user, action, allowed(rights, needed), id=f"{rights or 'none'}-{action}")
    for action, needed in ACTIONS.items()
    for user, rights in USERS.items()
    if not action.startswith("flow-") or user in FLOW_USERS
]


@dataclass
class World:
    dir: Path
    started: datetime
    key: int
    last: dict | None = None  # the snapshot after the last refusal (nothing changed since)

    @property
    def state_url(self) -> str:
        return sqlite_url(self.dir / "state.db")

    @property
    def district_url(self) -> str:
        return sqlite_url(self.dir / "district.db")

    @property
    def rights_url(self) -> str:
        return sqlite_url(self.dir / "rights.db")


@pytest.fixture(scope="module")
def world(demo_template, tmp_path_factory, prefect_api):
    """One demo for the whole matrix (cells only read it, or refuse), users made once."""
    from selective_sync.rights import RightsStore

    directory = tmp_path_factory.mktemp("rights-matrix") / "data"
    shutil.copytree(demo_template, directory)
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("SELECTIVE_SYNC_"):
            patch.delenv(name)
    patch.setenv("SELECTIVE_SYNC_DATA_DIR", str(directory))
    with RightsStore.from_settings() as store:
        store.bootstrap_admin(ADMIN)
        for user, rights in USERS.items():
            if rights:
                store.grant(ADMIN, user, rights)
    import json

    manifest = json.loads((directory / "manifest.json").read_text())
    yield World(directory, datetime.now(UTC), manifest["PersonIdentity"]["mismatched"][0])
    patch.undo()


def make_entry(world: World) -> str:
    """A fresh Sync History entry (a dry run: nothing written) to show, report or delete."""
    from flows.sync_request import selective_sync

    run_id, state, _ = run_flow(
        selective_sync, object="PersonIdentity", ids=[world.key], requested_by=ADMIN, dry_run=True
    )
    assert state.is_completed(), state
    return run_id


def existing_entry(world) -> str:
    """An entry that exists now (an allowed clear may have removed the others)."""
    from flows.history_store import list_entries

    entries = list_entries(limit=1, user=ADMIN)
    if entries:
        return entries[0].run_id
    world.last = None
    return make_entry(world)


NEEDS_ENTRY = ("list", "show", "report", "delete")


def snapshot(world: World) -> dict:
    """Everything a refusal must leave alone."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime

    from flows.history_store import _artifacts, list_entries

    with get_client(sync_client=True) as client:
        runs, offset = [], 0
        while True:
            page = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    expected_start_time=FlowRunFilterExpectedStartTime(after_=world.started)
                ),
                limit=200,
                offset=offset,
            )
            runs.extend(page)
            if len(page) < 200:
                break
            offset += 200
        flows = {f.id: f.name for f in client.read_flows()}
        artifacts = _artifacts(client, [r.id for r in runs])
    return {
        "state": whole_database_checksum(world.state_url),
        "district": whole_database_checksum(world.district_url),
        "rights": whole_database_checksum(world.rights_url),
        "sync_runs": {
            str(r.id): r.state_type.value for r in runs if flows[r.flow_id] == "selective-sync"
        },
        # Keyed artifacts are the product's (history, progress, reports); a failed run's
        # unkeyed result record (Prefect persisting the exception) is not.
        "artifacts": sorted(str(a.id) for a in artifacts if a.key or a.type),
        "reports": sorted(str(p.relative_to(world.dir)) for p in world.dir.glob("reports/**/*.*")),
        "history": [e.as_dict(with_outcomes=False) for e in list_entries(limit=50, user=ADMIN)],
    }


# ---------------------------------------------------------------- the actions


def act(action: str, user: str, world: World, entry: str, tmp_path: Path):
    """Do ``action`` as ``user``. Returns what it returned; raises what it raised. CLI
    actions return the CliResult (the CLI turns refusals into an exit code)."""
    from flows import history_maintenance as maintenance
    from flows import history_store as store
    from flows.sync_request import selective_sync
    from flows.verification_summary import verification_summary

    if action == "api-list":
        return store.list_entries(user=user)
    if action == "api-show":
        return store.get_entry(entry, user=user)
    if action == "api-delete":
        return store.delete_entry(entry, user=user)
    if action == "api-clear":
        return store.clear(user=user)
    flow_calls = {
        "flow-sync": lambda: run_flow(
            selective_sync,
            object="PersonIdentity",
            ids=str(world.key),
            requested_by=user,
            dry_run=True,
        ),
        "flow-verify": lambda: run_flow(
            verification_summary, objects=["Graduation"], requested_by=user
        ),
        "flow-delete": lambda: run_flow(
            maintenance.delete_history_entry, run_id=entry, requested_by=user
        ),
        "flow-clear": lambda: run_flow(maintenance.clear_history, requested_by=user),
    }
    if action in flow_calls:
        _, state, result = flow_calls[action]()
        if isinstance(result, BaseException):
            assert state.is_failed()
            raise result
        assert state.is_completed(), state
        return result
    args = {
        "cli-sync": ["sync", "PersonIdentity", str(world.key), "--dry-run"],
        "cli-history-list": ["history", "list"],
        "cli-history-show": ["history", "show", entry],
        "cli-report": ["report", entry, "-o", str(tmp_path / "r.pdf")],
        "cli-history-delete": ["history", "delete", entry],
        "cli-history-clear": ["history", "clear", "--yes"],
    }[action]
    return cli_in_process(*args, "--user", user)


@pytest.mark.parametrize(("user", "action", "expected"), CELLS)
def test_rights_matrix(world, tmp_path, user, action, expected):
    needed = ACTIONS[action]
    entry = ""
    if action.endswith(NEEDS_ENTRY):
        if expected and action.endswith("delete"):
            entry = make_entry(world)  # one to delete
            world.last = None
        else:
            entry = existing_entry(world)
    if expected:
        world.last = None
        result = act(action, user, world, entry, tmp_path)
        if action.startswith("cli-"):
            assert result.returncode == 0, (result.stdout, result.stderr)
        check_allowed(action, result, entry, world, tmp_path)
        return

    before = world.last or snapshot(world)
    refusal = f"user '{user}' lacks the {needed} right"
    if action.startswith("cli-"):
        result = act(action, user, world, entry, tmp_path)
        line = result.error_line()
        assert result.returncode == 1
        assert refusal in line, line
        assert not (tmp_path / "r.pdf").exists()
    else:
        with pytest.raises(RightsError) as info:
            act(action, user, world, entry, tmp_path)
        assert refusal in str(info.value)
    tally.add("rights_refusals_tried")
    after = snapshot(world)
    if action == "flow-sync":
        # The refused request is a Failed run, and the only change: it wrote nothing, not
        # even to the ledger, so it is no history entry.
        new = {k: v for k, v in after["sync_runs"].items() if k not in before["sync_runs"]}
        assert list(new.values()) == ["FAILED"], new
        (new_id,) = new
        assert new_id not in {e["run_id"] for e in after["history"]}
        del after["sync_runs"][new_id]
        world.last = None
    else:
        world.last = after
    assert after == before


def check_allowed(action: str, result, entry: str, world: World, tmp_path: Path) -> None:
    from flows.history_store import list_entries

    ids = [e.run_id for e in list_entries(limit=50, user=ADMIN)]
    if action in ("api-delete", "flow-delete", "cli-history-delete"):
        assert entry not in ids
    elif action in ("api-clear", "flow-clear", "cli-history-clear"):
        assert ids == []
    elif action == "api-show":
        assert result.run_id == entry
    elif action == "api-list":
        assert entry in [e.run_id for e in result]
    elif action == "flow-sync":
        assert result.dry_run and [k.key for k in result.keys] == [world.key]
    elif action == "flow-verify":
        assert [o.object for o in result.objects] == ["Graduation"]
    elif action == "cli-sync":
        assert "Records" in result.stdout
    elif action in ("cli-history-list", "cli-history-show"):
        assert entry[:8] in result.stdout
    elif action == "cli-report":
        assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("rights", ["", "RD"])
def test_reconcile_requester_without_w_is_refused(world, rights):
    """The nightly reconcile flow runs as its fixed requester, which needs W."""
    from flows.reconcile import reconcile
    from selective_sync.reconcile import REQUESTER
    from selective_sync.rights import RightsStore

    with RightsStore.from_settings() as store:
        if rights:
            store.grant(ADMIN, REQUESTER, rights)
        elif store.rights_of(REQUESTER):
            store.revoke(ADMIN, REQUESTER)
    world.last = None
    before = snapshot(world)
    _, state, result = run_flow(reconcile, max_keys=5)
    assert state.is_failed() and isinstance(result, RightsError), result
    assert f"user '{REQUESTER}' lacks the W right" in str(result)
    tally.add("rights_refusals_tried")
    assert snapshot(world) == before


def test_d_without_r_reads_nothing_through_a_delete(world):
    """A D-only user may delete by run id, but a run-name prefix matching several entries
    must not list them (that would be reading the history without R)."""
    from flows.history_store import delete_entry
    from selective_sync.errors import BadInput

    make_entry(world)  # at least two entries whose names start alike
    make_entry(world)
    world.last = None
    before = snapshot(world)
    with pytest.raises(BadInput) as info:
        delete_entry("PersonIdentity x1 by", user="dora")
    message = str(info.value)
    assert "matches" in message
    for e in before["history"]:
        assert e["run_id"][:8] not in message and ADMIN not in message
    assert snapshot(world) == before
    tally.add("rights_refusals_tried")
    # With R as well, the same mistake lists the candidates to choose from.
    with pytest.raises(BadInput) as info:
        delete_entry("PersonIdentity x1 by", user="rhoda")
    assert ADMIN in str(info.value)
