"""The R/W/D rights store and ``selective-sync rights``: real databases, no mocks."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dbservers import server_database
from sqlalchemy import create_engine, select

from selective_sync.errors import BadInput, DatabaseUnavailable
from selective_sync.rights import (
    Right,
    RightsError,
    RightsStore,
    audit_table,
    parse_rights,
    rights_table,
)
from selective_sync.rights import authorise as require
from selective_sync.settings import sqlite_url

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers


def dump(url: str) -> tuple[list[tuple], list[tuple]]:
    """Every row of the rights table and the audit table, in a stable order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rights = conn.execute(select(rights_table).order_by(rights_table.c.user_name)).all()
            audit = conn.execute(select(audit_table).order_by(audit_table.c.id)).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in rights], [tuple(r) for r in audit]


def assert_refused_unchanged(url: str, exc_type, action, match: str | None = None):
    """``action`` raises ``exc_type`` (matching ``match``) and leaves both tables as they were."""
    before = dump(url)
    with pytest.raises(exc_type, match=match) as info:
        action()
    assert dump(url) == before
    return info.value


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    """A dedicated SQLite rights store under tmp_path, configured the way users do: env."""
    rights_url = sqlite_url(tmp_path / "rights" / "rights.db")
    monkeypatch.setenv("SELECTIVE_SYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SELECTIVE_SYNC_RIGHTS_URL", rights_url)
    return rights_url


@pytest.fixture
def store(url):
    with RightsStore.from_settings() as s:
        yield s


@pytest.fixture
def team(store):
    """alice RWD (bootstrapped), rita R, walt W, wendy RW, dora D (only)."""
    store.bootstrap_admin("alice")
    for user, rights in {"rita": "R", "walt": "W", "wendy": "RW", "dora": "D"}.items():
        store.grant("alice", user, rights)
    return store


# ---------------------------------------------------------------- reading and checks


def test_unknown_user_has_no_rights_and_is_refused_everything(store, url):
    assert store.rights_of("nobody") == frozenset()
    for right in Right:
        assert not store.has("nobody", right)
        err = assert_refused_unchanged(url, RightsError, lambda r=right: store.require("nobody", r))
        assert "'nobody'" in str(err) and f"lacks the {right.value} right" in str(err)
    assert dump(url) == ([], [])  # nobody got anything implicitly


def test_refusal_message_names_user_right_and_the_fix(team):
    with pytest.raises(RightsError) as info:
        team.require("rita", Right.W)
    assert str(info.value) == (
        "user 'rita' lacks the W right (run syncs); ask an administrator: "
        "selective-sync rights grant rita RW"
    )


def test_w_counts_as_r_for_reading_but_d_does_not(team):
    assert team.rights_of("walt") == {Right.W}  # stored exactly as granted
    team.require("walt", Right.R)
    team.require("walt", "r")
    assert [e.user for e in team.list_rights("walt")] == ["alice", "dora", "rita", "walt", "wendy"]
    with pytest.raises(RightsError, match="'dora' lacks the R right"):
        team.list_rights("dora")
    with pytest.raises(RightsError, match="'dora' lacks the W right"):
        team.require("dora", Right.W)
    with pytest.raises(RightsError, match="'rita' lacks the D right"):
        team.require("rita", Right.D)
    with pytest.raises(RightsError, match="'wendy' lacks the D right"):
        team.require("wendy", Right.D)


def test_module_require_uses_the_configured_store(team):
    require("wendy", Right.W)
    with pytest.raises(RightsError, match="'rita' lacks the W right"):
        require("rita", "W")
    with pytest.raises(BadInput, match="unknown right"):
        require("alice", "X")


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_once_then_refused(store, url):
    entry = store.bootstrap_admin("  alice  ")
    assert (entry.user, entry.rights, entry.granted_by) == ("alice", "RWD", "alice")
    assert store.rights_of("alice") == {Right.R, Right.W, Right.D}
    for user in ("alice", "mallory"):
        assert_refused_unchanged(
            url, RightsError, lambda u=user: store.bootstrap_admin(u), "already exists"
        )
    assert store.rights_of("mallory") == frozenset()


def test_bootstrap_refused_even_when_the_only_admin_is_d_only(store, url):
    store.bootstrap_admin("alice")
    store.grant("alice", "dora", "D")
    store.grant("dora", "alice", "R")  # alice steps down; dora is the one administrator
    assert_refused_unchanged(url, RightsError, lambda: store.bootstrap_admin("mallory"))


# ---------------------------------------------------------------- grant / revoke


def test_grant_sets_exactly_and_letters_are_case_insensitive(team):
    assert team.grant("alice", "bob", "rwD").rights == "RWD"
    assert team.grant("alice", "bob", "r").rights == "R"
    assert team.rights_of("bob") == {Right.R}
    assert team.grant("alice", "bob", "W, R").rights == "RW"


@pytest.mark.parametrize("actor", ["rita", "walt", "wendy", "nobody", "ALICE"])
def test_grant_and_revoke_need_d(team, url, actor):
    err = assert_refused_unchanged(
        url, RightsError, lambda: team.grant(actor, "mallory", "RWD"), "lacks the D right"
    )
    assert repr(actor) in str(err)
    assert_refused_unchanged(url, RightsError, lambda: team.grant(actor, actor, "RWD"))
    assert_refused_unchanged(url, RightsError, lambda: team.revoke(actor, "rita"))
    assert team.rights_of("mallory") == frozenset()


def test_d_without_r_can_administer(team):
    team.grant("dora", "bob", "R")
    assert team.revoke("dora", "bob") == {Right.R}
    assert team.rights_of("bob") == frozenset()


def test_revoke_removes_every_right_and_unknown_user_is_refused(team, url):
    assert team.revoke("alice", "wendy") == {Right.R, Right.W}
    assert team.rights_of("wendy") == frozenset()
    assert_refused_unchanged(url, BadInput, lambda: team.revoke("alice", "wendy"), "no rights")


@pytest.mark.parametrize(
    "user, rights, match",
    [
        ("bob", "RX", "unknown right letter"),
        ("bob", "read", "unknown right letter"),
        ("bob", "", "no rights given"),
        ("bob", " , ", "no rights given"),
        ("", "R", "empty"),
        ("   ", "R", "empty"),
        ("bo\tb", "R", "control characters"),
        ("b\nob", "R", "control characters"),
        ("bob\x00", "R", "control characters"),
        ("bo\u202eb", "R", "control characters"),  # right-to-left override
        ("b" * 129, "R", "longer than 128"),
    ],
)
def test_bad_input_refused_with_nothing_changed(team, url, user, rights, match):
    assert_refused_unchanged(url, BadInput, lambda: team.grant("alice", user, rights), match)


def test_bad_actor_names_refused(team, url):
    assert_refused_unchanged(url, BadInput, lambda: team.grant("", "bob", "R"), "acting user")
    assert_refused_unchanged(url, BadInput, lambda: team.list_rights("a\x1bb"), "control")


def test_names_are_stripped_and_case_sensitive(team):
    team.grant("alice", "  Bob ", "W")
    assert team.rights_of("Bob") == {Right.W}
    assert team.rights_of(" Bob") == {Right.W}
    assert team.rights_of("bob") == frozenset()
    assert team.rights_of("ALICE") == frozenset()
    team.grant(" alice ", "bob", "R")  # a different user
    assert team.rights_of("Bob") == {Right.W}


def test_max_length_and_unicode_names_are_kept_exactly(team):
    long_name = "ü" * 128
    team.grant("alice", long_name, "R")
    team.grant("alice", "Zoë O'Brien-李", "RW")
    by_user = {e.user: e.rights for e in team.list_rights("alice")}
    assert by_user[long_name] == "R" and by_user["Zoë O'Brien-李"] == "RW"


def test_last_administrator_cannot_remove_own_d(store, url):
    store.bootstrap_admin("alice")
    assert_refused_unchanged(url, RightsError, lambda: store.grant("alice", "alice", "RW"), "only")
    assert_refused_unchanged(url, RightsError, lambda: store.revoke("alice", "alice"), "only")
    store.grant("alice", "bob", "RWD")
    store.revoke("bob", "alice")  # with a second administrator it is allowed
    assert store.rights_of("alice") == frozenset()


def test_audit_records_every_change(team):
    team.revoke("alice", "rita")
    log = team.audit_log("walt", limit=3)
    assert [(e.action, e.actor, e.user, e.old_rights, e.new_rights) for e in log] == [
        ("revoke", "alice", "rita", "R", None),
        ("grant", "alice", "dora", None, "D"),
        ("grant", "alice", "wendy", None, "RW"),
    ]
    assert len(team.audit_log("alice")) == 6
    with pytest.raises(RightsError):
        team.audit_log("dora")


def test_parse_rights():
    assert parse_rights("dwr") == {Right.R, Right.W, Right.D}
    assert parse_rights(["R", "r"]) == {Right.R}


# ---------------------------------------------------------------- where the store lives


def test_default_store_is_beside_the_demo_or_in_the_state_database(tmp_path, monkeypatch):
    monkeypatch.delenv("SELECTIVE_SYNC_RIGHTS_URL", raising=False)
    monkeypatch.delenv("SELECTIVE_SYNC_STATE_URL", raising=False)
    monkeypatch.setenv("SELECTIVE_SYNC_DATA_DIR", str(tmp_path / "data"))
    # The demo keeps rights in DATA_DIR/rights.db (so regenerating the demo keeps them) and
    # never creates a stray empty state database.
    with pytest.raises(RightsError, match="alice"):
        require("alice", Right.R)
    assert (tmp_path / "data" / "rights.db").exists()
    assert not (tmp_path / "data" / "state.db").exists()

    # With a real state database configured, rights live there, and it must exist.
    monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", sqlite_url(tmp_path / "missing.db"))
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        require("alice", Right.R)
    assert not (tmp_path / "missing.db").exists()

    state = tmp_path / "state.db"
    sqlite3.connect(state).close()  # an existing (here empty) state database
    monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", sqlite_url(state))
    with RightsStore.from_settings() as s:
        s.bootstrap_admin("alice")
    assert dump(sqlite_url(state))[0][0][:2] == ("alice", "RWD")


# ---------------------------------------------------------------- the CLI, across processes


def cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {}), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "rights", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_cli_rights_persist_across_processes(url):
    r = cli("bootstrap", "alice")
    assert r.returncode == 0, r.stderr
    r = cli("grant", "jgodfrey", "rw", "--user", "alice")
    assert r.returncode == 0, r.stderr
    assert "jgodfrey now holds RW" in r.stdout

    r = cli("list", "--json", "--user", "jgodfrey")
    assert r.returncode == 0, r.stderr
    rows = {row["user"]: row for row in json.loads(r.stdout)}
    assert rows["jgodfrey"]["rights"] == "RW" and rows["jgodfrey"]["granted_by"] == "alice"
    assert rows["alice"]["rights"] == "RWD"

    r = cli("list", "-u", "alice")
    assert r.returncode == 0 and "jgodfrey" in r.stdout and "RWD" in r.stdout

    r = cli("revoke", "jgodfrey", "-u", "alice")
    assert r.returncode == 0, r.stderr
    with RightsStore(url) as s:  # and this process sees it too
        assert s.rights_of("jgodfrey") == frozenset()


def test_cli_refusals_are_one_line_exit_1_and_change_nothing(store, url):
    store.bootstrap_admin("alice")
    store.grant("alice", "rita", "R")
    before = dump(url)
    # One of each kind of refusal (the store tests above cover every path in-process).
    attempts = {
        ("bootstrap", "mallory"): "already exists",
        ("grant", "mallory", "W", "-u", "rita"): (
            "user 'rita' lacks the D right (delete history entries, clear the history and "
            "administer rights); ask an administrator: selective-sync rights grant rita RD"
        ),
        ("grant", "mallory", "RZ", "-u", "alice"): "unknown right letter",
        ("revoke", "alice", "-u", "alice"): "only administrator",
        ("list", "-u", "mallory"): "user 'mallory' lacks the R right",
    }
    for args, expected in attempts.items():
        r = cli(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
        assert expected in lines[0]
    assert dump(url) == before


def test_cli_defaults_to_the_os_user(store):
    store.bootstrap_admin(getpass.getuser())
    r = cli("grant", "bob", "R")  # no --user: acts as the OS user
    assert r.returncode == 0, r.stderr
    assert store.rights_of("bob") == {Right.R}


def test_cli_prints_user_names_literally_in_errors(url):
    r = cli("list", "-u", "[/x]")
    assert r.returncode == 1
    assert "user '[/x]' lacks the R right" in r.stderr


def test_cli_prints_user_names_literally_in_tables(store):
    store.bootstrap_admin("alice")
    store.grant("alice", "[bold]x[/bold]", "R")
    r = cli("list", "-u", "alice")
    assert r.returncode == 0, r.stderr
    assert "[bold]x[/bold]" in r.stdout


# ---------------------------------------------------------------- PostgreSQL and MariaDB


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_server_database_store(kind):
    with server_database(kind) as db_url:
        with RightsStore(db_url) as s:
            s.bootstrap_admin("alice")
            s.grant("alice", "Bob", "rw")
            s.grant("alice", "bob", "R")  # a different user: names are case-sensitive
            assert s.rights_of("Bob") == {Right.R, Right.W}
            assert s.rights_of("bob") == {Right.R}
            assert s.rights_of("BOB") == frozenset()
            s.grant("alice", "Zoë-李" + "x" * 123, "W")
            before = dump(db_url)
            for action in (
                lambda: s.bootstrap_admin("mallory"),
                lambda: s.grant("bob", "mallory", "RWD"),
                lambda: s.revoke("Bob", "alice"),
                lambda: s.revoke("alice", "alice"),
                lambda: s.list_rights("BOB"),
            ):
                with pytest.raises(RightsError):
                    action()
            assert dump(db_url) == before
        # A fresh store (new engine, tables already there) reads the same rights back.
        with RightsStore(db_url) as again:
            users = {e.user: e.rights for e in again.list_rights("bob")}
            assert users == {"alice": "RWD", "Bob": "RW", "bob": "R", "Zoë-李" + "x" * 123: "W"}
            assert again.revoke("alice", "Bob") == {Right.R, Right.W}
            assert [e.action for e in again.audit_log("alice")][:2] == ["revoke", "grant"]


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_two_admins_demoting_each_other_at_once_leave_one(kind):
    """Row locks on the D holders: concurrent revokes can never leave nobody holding D."""
    with server_database(kind) as db_url:
        with RightsStore(db_url) as s:
            s.bootstrap_admin("alice")
            s.grant("alice", "bob", "RWD")
        for _round in range(5):
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def demote(actor: str, user: str, barrier=barrier, outcomes=outcomes) -> None:
                with RightsStore(db_url) as store:
                    store.rights_of(actor)  # connect and create-check before the race
                    barrier.wait()
                    try:
                        store.revoke(actor, user)
                        outcomes.append("ok")
                    except RightsError as exc:
                        outcomes.append(str(exc))

            threads = [
                threading.Thread(target=demote, args=("alice", "bob")),
                threading.Thread(target=demote, args=("bob", "alice")),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            with RightsStore(db_url) as s:
                holders = {u for u in ("alice", "bob") if Right.D in s.rights_of(u)}
                assert len(holders) == 1, outcomes
                assert outcomes.count("ok") == 1, outcomes
                # Restore two administrators for the next round.
                survivor = holders.pop()
                s.grant(survivor, "bob" if survivor == "alice" else "alice", "RWD")
