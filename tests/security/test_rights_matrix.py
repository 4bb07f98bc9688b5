"""The rights matrix: every entry point × R/W/D × own district / other district / all
districts / none, on an installation serving two districts that both have data.

Users hold one letter on district 275 (their own), or on all districts (state staff), or
nothing. Each action targets district 275 or 312 (or, for the state's view and grants on
all districts, all districts); it needs its right on its target, so a 275 user is allowed
on 275 and refused on 312, where an unchecked action would succeed just the same (312 has
its own district database, history entries and reports). Entry points: the Sync History
API functions, the flows (selective-sync, verification-summary, find-ids,
delete-history-entry, clear-sync-history), the CLI commands (sync, summary, find, history
list/show/delete/clear, report, rights grant), the report server, the state's view; the
reconciliation apart at the end.

A refusal must change nothing: the state database, both district databases, the grants and
their audit, the Prefect runs and artifacts behind the history, the stored reports and both
districts' history lists; and it must be recorded in the refusal audit, once, with the
user, the entry point, the right and the district. An allowed action must succeed on its
target and leave the other district's history alone. test_rights.py covers the rights store
and ``selective-sync rights`` itself.

A refused *selective-sync* run is itself a Failed run (the design counts a refused request
as one that could not be processed): there the check is that it is the only new thing,
with no artifact, no write and no history entry.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import urllib.error
import urllib.request
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tally
from helpers import (
    logs_of,
    refusals_of,
    rows_checksum,
    serve_two_districts,
    whole_database_checksum,
)

from selective_sync.rights import ALL_DISTRICTS, RightsError
from selective_sync.settings import sqlite_url

from .conftest import cli_in_process, run_flow

ADMIN = "matrix-admin"
OWN, OTHER, ALL = 275, 312, ALL_DISTRICTS

# user -> (the letters they hold, where: 275, all districts, or nowhere)
USERS: dict[str, tuple[str, int | None]] = {
    "nobody": ("", None),
    "r-275": ("R", OWN),
    "w-275": ("W", OWN),
    "d-275": ("D", OWN),
    "r-all": ("R", ALL),
    "w-all": ("W", ALL),
    "d-all": ("D", ALL),
}

# action -> (the right it needs on its target, the entry point its refusal names)
ACTIONS: dict[str, tuple[str, str]] = {
    "api-list": ("R", "api:history"),
    "api-show": ("R", "api:history"),
    "api-delete": ("D", "api:history"),
    "api-clear": ("D", "api:history"),
    "flow-sync": ("W", "flow:selective-sync"),
    "flow-verify": ("R", "flow:verification-summary"),
    "flow-find": ("R", "flow:find-ids"),
    "flow-delete": ("D", "flow:delete-history-entry"),
    "flow-clear": ("D", "flow:clear-sync-history"),
    "cli-sync": ("W", "cli:sync"),
    "cli-summary": ("R", "cli:summary"),
    "cli-find": ("R", "cli:find"),
    "cli-history-list": ("R", "cli:history list"),
    "cli-history-show": ("R", "cli:history show"),
    "cli-report": ("R", "cli:report"),
    "cli-history-delete": ("D", "cli:history delete"),
    "cli-history-clear": ("D", "cli:history clear"),
    "cli-rights-grant": ("D", "cli:rights grant"),
    "report-server": ("R", "report-server"),
}
# Actions on all districts at once.
STATE_ACTIONS: dict[str, tuple[str, str]] = {
    "flow-state-view": ("R", "flow:verification-summary"),
    "cli-state-view": ("R", "cli:summary"),
    "cli-rights-grant-all": ("D", "cli:rights grant"),
    "report-server-state": ("R", "report-server"),
}
NEEDS_ENTRY = ("list", "show", "delete", "report", "report-server")
BY_RUN = (
    "api-show",
    "api-delete",
    "flow-delete",
    "cli-history-show",
    "cli-history-delete",
    "cli-report",
)


def allowed(user: str, needed: str, target: int) -> bool:
    letters, where = USERS[user]
    held = set(letters) | ({"R"} if "W" in letters else set())
    return needed in held and where is not None and where in (ALL, target)


def scope_of(user: str, target: int) -> str:
    where = USERS[user][1]
    if where is None:
        return "none"
    if where == ALL:
        return "all"
    return "own" if where == target else "other"


CELLS = [
    pytest.param(
        user,
        action,
        target,
        allowed(user, needed, target),
        id=f"{action}-{target}-{USERS[user][0] or 'none'}-{scope_of(user, target)}",
    )
    for action, (needed, _entry) in ACTIONS.items()
    for target in (OWN, OTHER)
    for user in USERS
] + [
    pytest.param(
        user,
        action,
        ALL,
        allowed(user, needed, ALL),
        id=f"{action}-{USERS[user][0] or 'none'}-{scope_of(user, ALL)}",
    )
    for action, (needed, _entry) in STATE_ACTIONS.items()
    for user in USERS
]


@dataclass
class World:
    dir: Path
    keys: dict[int, int]  # a key differing between each district and the state
    server_url: str
    prefect_db: Path  # the Prefect API's database (what it stored, read without the API)
    last: dict | None = None  # the snapshot after the last refusal (nothing changed since)
    entries: dict[int, str] = field(default_factory=dict)

    @property
    def state_url(self) -> str:
        return sqlite_url(self.dir / "state.db")

    def district_url(self, number: int) -> str:
        return sqlite_url(self.dir / ("district.db" if number == OWN else "district-312.db"))

    @property
    def rights_url(self) -> str:
        return sqlite_url(self.dir / "rights.db")


@pytest.fixture(scope="module")
def world(two_district_template, tmp_path_factory, prefect_api):
    """One two-district demo for the whole matrix, users made once, a report server."""
    import json

    from selective_sync.reports.server import make_server
    from selective_sync.rights import RightsStore

    directory = tmp_path_factory.mktemp("rights-matrix") / "data"
    shutil.copytree(two_district_template, directory)
    patch = pytest.MonkeyPatch()
    serve_two_districts(directory, patch)
    with RightsStore.from_settings() as store:
        store.bootstrap_admin(ADMIN)
        for user, (letters, where) in USERS.items():
            if letters:
                store.grant(ADMIN, user, letters, district=where)
    manifest = json.loads((directory / "manifest.json").read_text())
    keys = {
        OWN: manifest["PersonIdentity"]["mismatched"][0],
        OTHER: manifest["other_district"]["PersonIdentity"]["mismatched"][0],
    }
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield World(directory, keys, server.url, prefect_api)
    server.shutdown()
    server.server_close()
    patch.undo()


def make_entry(world: World, district: int) -> str:
    """A fresh Sync History entry of ``district`` (a dry run: nothing written)."""
    from flows.sync_request import selective_sync

    run_id, state, _ = run_flow(
        selective_sync,
        object="PersonIdentity",
        ids=[world.keys[district]],
        requested_by=ADMIN,
        district=district,
        dry_run=True,
    )
    assert state.is_completed(), state
    world.last = None
    return run_id


def existing_entry(world: World, district: int) -> str:
    """An entry of ``district`` that exists now (an allowed clear may have removed them)."""
    from flows.history_store import list_entries

    entries = list_entries(district, limit=1, user=ADMIN)
    if entries:
        return entries[0].run_id
    return make_entry(world, district)


def history(district: int) -> list[dict]:
    from flows.history_store import list_entries

    return [e.as_dict(with_outcomes=False) for e in list_entries(district, limit=50, user=ADMIN)]


def prefect_stored(prefect_db: Path) -> tuple[dict[str, str], list[str]]:
    """What Prefect stored, read from its database (the harness server's SQLite file): the
    state of every selective-sync run, and every artifact of the product (keyed ones:
    history, progress, reports; a failed run's unkeyed result record, Prefect persisting
    the exception, is not). Read directly, as the API would page through every run and
    artifact of the module after every refusal."""
    with closing(sqlite3.connect(f"file:{prefect_db}?mode=ro", uri=True, timeout=30)) as conn:
        runs = conn.execute(
            "SELECT flow_run.id, flow_run.state_type FROM flow_run"
            " JOIN flow ON flow.id = flow_run.flow_id WHERE flow.name = 'selective-sync'"
        ).fetchall()
        artifacts = conn.execute(
            "SELECT id FROM artifact WHERE key IS NOT NULL OR type IS NOT NULL"
        ).fetchall()
    return {run_id: state for run_id, state in runs}, sorted(a for (a,) in artifacts)


def snapshot(world: World) -> dict:
    """Everything a refusal must leave alone."""
    sync_runs, artifacts = prefect_stored(world.prefect_db)
    return {
        "state": whole_database_checksum(world.state_url),
        "district 275": whole_database_checksum(world.district_url(OWN)),
        "district 312": whole_database_checksum(world.district_url(OTHER)),
        # A refusal records itself in the refusal audit: checked apart.
        "rights": whole_database_checksum(world.rights_url, refusals=False),
        "sync_runs": sync_runs,
        "artifacts": artifacts,
        "reports": sorted(str(p.relative_to(world.dir)) for p in world.dir.glob("reports/**/*.*")),
        "history 275": history(OWN),
        "history 312": history(OTHER),
    }


# ---------------------------------------------------------------- the actions


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def state_report_link(world: World, user: str) -> str:
    """A link to a state's-view report (district 0) for ``user``, on a stored stand-in file."""
    from selective_sync.reports.storage import LinkSigner, ReportStorage, StoredReport

    ref = StoredReport.state(uuid.UUID(int=0), "pdf")
    path = ReportStorage.from_settings().path(ref)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%PDF-1.7 the state's view, stand-in bytes")
        world.last = None
    return LinkSigner.from_settings().link(world.server_url, ref, user)


def act(action: str, user: str, target: int, world: World, entry: str, tmp_path: Path):
    """Do ``action`` as ``user`` on ``target``. Returns what it returned; raises what it
    raised. CLI actions return the CliResult, HTTP ones (status, body)."""
    from flows import history_maintenance as maintenance
    from flows import history_store as store
    from flows.find_ids import find_ids
    from flows.sync_request import selective_sync
    from flows.verification_summary import verification_summary
    from selective_sync.reports.storage import LinkSigner, StoredReport

    if action == "api-list":
        return store.list_entries(target, user=user)
    if action == "api-show":
        return store.get_entry(entry, user=user)
    if action == "api-delete":
        return store.delete_entry(entry, user=user)
    if action == "api-clear":
        return store.clear(target, user=user)
    if action == "report-server":
        link = LinkSigner.from_settings().link(
            world.server_url, StoredReport.sync(entry, "pdf"), user
        )
        return fetch(link)
    if action == "report-server-state":
        return fetch(entry)  # the link, made (with its file) before the snapshot
    flow_calls = {
        "flow-sync": lambda: run_flow(
            selective_sync,
            object="PersonIdentity",
            ids=str(world.keys[target]),
            requested_by=user,
            district=target,
            dry_run=True,
        ),
        "flow-verify": lambda: run_flow(
            verification_summary, district=target, objects=["Graduation"], requested_by=user
        ),
        "flow-state-view": lambda: run_flow(
            verification_summary, all_districts=True, requested_by=user
        ),
        "flow-find": lambda: run_flow(
            find_ids, requested_by=user, district=target, last_name="A", limit=5
        ),
        "flow-delete": lambda: run_flow(
            maintenance.delete_history_entry, run_id=entry, requested_by=user
        ),
        "flow-clear": lambda: run_flow(
            maintenance.clear_history, requested_by=user, district=target
        ),
    }
    if action in flow_calls:
        run_id, state, result = flow_calls[action]()
        if isinstance(result, BaseException):
            assert state.is_failed()
            assert_plain_refusal(run_id, state, result)
            raise result
        assert state.is_completed(), state
        return result
    where = ["--district", str(target)]
    args = {
        "cli-sync": ["sync", "PersonIdentity", str(world.keys.get(target, 0)), *where, "--dry-run"],
        "cli-summary": ["summary", *where, "--object", "Graduation"],
        "cli-state-view": ["summary", "--all-districts"],
        "cli-find": ["find", "--last", "A", "--limit", "5", *where],
        "cli-history-list": ["history", "list", *where],
        "cli-history-show": ["history", "show", entry],
        "cli-report": ["report", entry, "-o", str(tmp_path / "r.pdf")],
        "cli-history-delete": ["history", "delete", entry],
        "cli-history-clear": ["history", "clear", *where, "--yes"],
        "cli-rights-grant": ["rights", "grant", "probe", "R", *where],
        "cli-rights-grant-all": ["rights", "grant", "probe", "R", "--all-districts"],
    }[action]
    return cli_in_process(*args, "--user", user)


def assert_plain_refusal(run_id: str, state, error: BaseException) -> None:
    """A refused run ends with the error's line as its message, and its log (the run page)
    holds that line and no traceback: a refusal is no crash."""
    line = " ".join(str(error).split())
    assert state.message == line, state.message
    logs = logs_of(run_id)
    assert line in logs, logs
    assert not [m for m in logs if "Traceback" in m or "Encountered exception" in m], logs


def is_http(action: str) -> bool:
    return action.startswith("report-server")


@pytest.mark.parametrize(("user", "action", "target", "expected"), CELLS)
def test_rights_matrix(world, tmp_path, user, action, target, expected):
    needed, entry_point = {**ACTIONS, **STATE_ACTIONS}[action]
    entry = ""
    if action.endswith(NEEDS_ENTRY):
        # One to delete when the delete is allowed; otherwise any entry of the target.
        entry = make_entry(world, target) if expected and "delete" in action else ""
        entry = entry or existing_entry(world, target)
    if action == "report-server-state":
        entry = state_report_link(world, user)
    if expected:
        world.last = None
        other = history(OTHER if target == OWN else OWN)
        result = act(action, user, target, world, entry, tmp_path)
        if action.startswith("cli-"):
            assert result.returncode == 0, (result.stdout, result.stderr)
        if is_http(action):
            assert result[0] == 200, result
        check_allowed(action, result, target, entry, world, tmp_path)
        if target != ALL:
            # The other district's history is untouched by anything done to this one.
            assert history(OTHER if target == OWN else OWN) == other
        return

    before = world.last or snapshot(world)
    refused_before = refusals_of(world.rights_url)
    # Looked up by run, an entry is refused on all districts, before anything is read, to a
    # user who holds the right on no district at all; else on the entry's district.
    nowhere = not allowed(user, needed, USERS[user][1] or ALL)
    district = ALL if action.endswith(BY_RUN) and nowhere else target
    where = "all districts" if district == ALL else f"district {district}"
    refusal = f"user '{user}' lacks the {needed} right"
    if action.startswith("cli-"):
        result = act(action, user, target, world, entry, tmp_path)
        line = result.error_line()
        assert result.returncode == 1
        assert refusal in line and f") on {where}; they hold" in line, line
        assert not (tmp_path / "r.pdf").exists()
    elif is_http(action):
        status, body = act(action, user, target, world, entry, tmp_path)
        assert status == 403, body
        assert refusal in body.decode() and f"on {where};" in body.decode()
    else:
        with pytest.raises(RightsError) as info:
            act(action, user, target, world, entry, tmp_path)
        assert refusal in str(info.value) and f") on {where}; they hold" in str(info.value)
    tally.add("rights_refusals_tried")
    # Recorded once, with who, where from, which right, which district.
    new = refusals_of(world.rights_url)[len(refused_before) :]
    assert [(r["user_name"], r["entry_point"], r["right_letter"], r["district"]) for r in new] == [
        (user, entry_point, needed, district)
    ], new
    assert new[0]["asked"]
    after = snapshot(world)
    if action == "flow-sync":
        # The refused request is a Failed run, and the only change: it wrote nothing, not
        # even to the ledger, so it is no history entry.
        fresh = {k: v for k, v in after["sync_runs"].items() if k not in before["sync_runs"]}
        assert list(fresh.values()) == ["FAILED"], fresh
        (fresh_id,) = fresh
        assert fresh_id not in {e["run_id"] for e in after[f"history {target}"]}
        del after["sync_runs"][fresh_id]
        world.last = None
    else:
        world.last = after
    assert after == before


def check_allowed(action: str, result, target: int, entry: str, world, tmp_path) -> None:
    from selective_sync.rights import RightsStore

    if action in ("api-delete", "flow-delete", "cli-history-delete"):
        assert entry not in [e["run_id"] for e in history(target)]
    elif action in ("api-clear", "flow-clear", "cli-history-clear"):
        assert history(target) == []
    elif action == "api-show":
        assert (result.run_id, result.district) == (entry, target)
    elif action == "api-list":
        assert {e.district for e in result} == {target} and entry in [e.run_id for e in result]
    elif action == "flow-sync":
        assert result.dry_run and [k.key for k in result.keys] == [world.keys[target]]
        assert result.district_number == target
    elif action == "flow-verify":
        assert result.district_number == target
        assert [o.object for o in result.objects] == ["Graduation"]
    elif action == "flow-state-view":
        assert {d.number for d in result.districts} == {OWN, OTHER}
    elif action == "flow-find":
        assert result.district_number == target
    elif action == "cli-find":
        assert f"of district {target}" in result.stdout
    elif action == "cli-sync":
        assert "Records" in result.stdout
    elif action == "cli-summary":
        assert str(target) in result.stdout and "Graduation" in result.stdout
    elif action == "cli-state-view":
        assert "275" in result.stdout and "312" in result.stdout
    elif action in ("cli-history-list", "cli-history-show"):
        assert entry[:8] in result.stdout
    elif action == "cli-report":
        assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    elif action in ("cli-rights-grant", "cli-rights-grant-all"):
        with RightsStore.from_settings() as store:
            assert "R" in store.grants_of("probe")[target]
    elif action in ("report-server", "report-server-state"):
        assert result[1][:5] == b"%PDF-"
    else:
        raise AssertionError(f"no check for {action}")


def test_a_reader_of_one_district_lists_no_other_districts_entries(world):
    """A run-name prefix matching entries of both districts: a user reading 275 only is
    shown 275's candidates, never 312's; a D-only user none at all (D does not read)."""
    from flows.history_store import delete_entry
    from selective_sync.errors import BadInput
    from selective_sync.rights import RightsStore

    with RightsStore.from_settings() as store:
        store.grant(ADMIN, "rd-275", "RD", district=OWN)
    own = [make_entry(world, OWN) for _ in range(2)]
    other = [make_entry(world, OTHER) for _ in range(2)]
    before = snapshot(world)
    prefix = f"PersonIdentity x1 by {ADMIN}"
    with pytest.raises(BadInput) as info:
        delete_entry(prefix, user="d-all")
    message = str(info.value)
    assert "matches" in message
    for run_id in own + other:
        assert run_id[:8] not in message
    with pytest.raises(BadInput) as info:
        delete_entry(prefix, user="rd-275")
    message = str(info.value)
    assert any(run_id[:8] in message for run_id in own), message
    for run_id in other:
        assert run_id[:8] not in message
    assert snapshot(world) == before
    tally.add("rights_refusals_tried")


@pytest.mark.parametrize("rights", ["", "RD"])
def test_reconcile_requester_without_w_on_a_district_is_refused(world, rights):
    """The nightly runs as its fixed requester, which needs W on every district it
    reconciles: W on 275 alone reconciles 275 and is refused 312, changing nothing."""
    from flows.reconcile import reconcile, reconcile_districts
    from selective_sync.reconcile import REQUESTER
    from selective_sync.rights import RightsStore

    with RightsStore.from_settings() as store:
        if rights:
            store.grant(ADMIN, REQUESTER, rights, district=OWN)
        elif store.grants_of(REQUESTER):
            store.revoke(ADMIN, REQUESTER, district=OWN)
    world.last = None
    before = snapshot(world)
    for flow, parameters, entry_point in (
        (reconcile, {"districts": [OTHER]}, "flow:reconcile"),
        (reconcile_districts, {"districts": [OTHER]}, "flow:reconcile-districts"),
    ):
        refused_before = refusals_of(world.rights_url)
        _, state, result = run_flow(flow, max_keys=5, **parameters)
        assert state.is_failed() and isinstance(result, RightsError), result
        assert f"user '{REQUESTER}' lacks the W right (run syncs) on district 312" in str(result)
        new = refusals_of(world.rights_url)[len(refused_before) :]
        assert [(r["user_name"], r["entry_point"], r["district"]) for r in new] == [
            (REQUESTER, entry_point, OTHER)
        ]
        tally.add("rights_refusals_tried")
    assert snapshot(world) == before


def test_reconcile_of_its_own_district_leaves_the_other_alone(world):
    """With W on 275 only, the reconciliation of 275 syncs 275's keys and not one row of 312."""
    from flows.reconcile import reconcile
    from selective_sync.reconcile import REQUESTER
    from selective_sync.rights import RightsStore

    with RightsStore.from_settings() as store:
        store.grant(ADMIN, REQUESTER, "W", district=OWN)
    other_rows = rows_checksum(world.state_url, OTHER)
    other_district = whole_database_checksum(world.district_url(OTHER))
    other_history = history(OTHER)
    own_rows = rows_checksum(world.state_url, OWN)
    _, state, result = run_flow(reconcile, districts=[OWN], max_keys=5)
    assert state.is_completed(), result
    (district,) = result.districts
    assert district.number == OWN and district.succeeded > 0 and not district.error
    assert rows_checksum(world.state_url, OWN) != own_rows
    assert rows_checksum(world.state_url, OTHER) == other_rows
    assert whole_database_checksum(world.district_url(OTHER)) == other_district
    assert history(OTHER) == other_history
    world.last = None
