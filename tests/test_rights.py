"""The rights store and ``selective-sync rights``: grants per district, the refusal audit, the
move of global grants to all districts. Real databases, no mocks."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
from dbservers import server_database
from sqlalchemy import create_engine, inspect, select

from selective_sync.errors import BadInput, DatabaseUnavailable
from selective_sync.rights import (
    ALL_DISTRICTS,
    Actor,
    Right,
    RightsError,
    RightsStore,
    audit_table,
    grants_table,
    legacy_rights_table,
    parse_rights,
    refusals_table,
)
from selective_sync.rights import authorise as require
from selective_sync.settings import sqlite_url

REPO = Path(__file__).resolve().parents[1]
ALL = ALL_DISTRICTS
OWN, OTHER = 275, 312  # the configured demo district, and a second one configured by env


# ---------------------------------------------------------------- helpers


def dump(url: str) -> tuple[list[tuple], list[tuple]]:
    """Every grant and every audit row, in a stable order (the refusal audit apart)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            if grants_table.name not in names:
                return [], []
            grants = conn.execute(
                select(grants_table).order_by(grants_table.c.user_name, grants_table.c.district)
            ).all()
            audit = conn.execute(select(audit_table).order_by(audit_table.c.id)).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in grants], [tuple(r) for r in audit]


def refusals(url: str) -> list[dict]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if refusals_table.name not in inspect(conn).get_table_names():
                return []
            rows = conn.execute(select(refusals_table).order_by(refusals_table.c.id)).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def assert_refused_unchanged(url: str, exc_type, action, match: str | None = None):
    """``action`` raises ``exc_type`` (matching ``match``) and leaves the grants and their
    audit as they were; a RightsError that names a refusal is recorded, exactly once."""
    before, refused_before = dump(url), refusals(url)
    with pytest.raises(exc_type, match=match) as info:
        action()
    assert dump(url) == before
    new = refusals(url)[len(refused_before) :]
    refusal = getattr(info.value, "refusal", None)
    if refusal is None:
        assert new == []
    else:
        assert [(r["user_name"], r["right_letter"], r["district"], r["message"]) for r in new] == [
            (refusal.user, refusal.right.value, refusal.district, str(info.value))
        ]
    return info.value


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    """A dedicated SQLite rights store under tmp_path, configured the way users do: env.
    District 275 is the configured default; 312 is configured too (its database is never
    opened by these tests)."""
    rights_url = sqlite_url(tmp_path / "rights" / "rights.db")
    for name in list(os.environ):
        if name.startswith("SELECTIVE_SYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SELECTIVE_SYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SELECTIVE_SYNC_RIGHTS_URL", rights_url)
    monkeypatch.setenv(
        "SELECTIVE_SYNC_DISTRICTS",
        json.dumps([{"number": OTHER, "name": "CEDAR FALLS", "url": "sqlite:////nonexistent"}]),
    )
    return rights_url


@pytest.fixture
def store(url):
    with RightsStore.from_settings() as s:
        yield s


@pytest.fixture
def team(store):
    """State staff (all districts): alice RWD (bootstrapped), rita R, walt W, wendy RW,
    dora D. District 275 staff: dave RW, dina D (only)."""
    store.bootstrap_admin("alice")
    for user, rights in {"rita": "R", "walt": "W", "wendy": "RW", "dora": "D"}.items():
        store.grant("alice", user, rights, district=ALL)
    store.grant("alice", "dave", "RW", district=OWN)
    store.grant("alice", "dina", "D", district=OWN)
    return store


# ---------------------------------------------------------------- reading and checks


def test_unknown_user_has_no_rights_and_is_refused_everything(store, url):
    assert store.grants_of("nobody") == {}
    for right in Right:
        for district in (OWN, ALL):
            assert store.rights_of("nobody", district) == frozenset()
            assert not store.has("nobody", right, district)
            err = assert_refused_unchanged(
                url,
                RightsError,
                lambda r=right, d=district: store.require("nobody", r, d, entry_point="test"),
            )
            assert "'nobody'" in str(err) and f"lacks the {right.value} right" in str(err)
    assert dump(url) == ([], [])  # nobody got anything implicitly
    assert len(refusals(url)) == 6 and {r["entry_point"] for r in refusals(url)} == {"test"}


def test_refusal_message_names_user_right_district_holdings_and_the_fix(team, url):
    with pytest.raises(RightsError) as info:
        team.require("rita", Right.W, OWN)
    assert str(info.value) == (
        "user 'rita' lacks the W right (run syncs) on district 275; they hold R on all "
        "districts; ask an administrator: selective-sync rights grant rita W --district 275"
    )
    with pytest.raises(RightsError) as info:
        team.require("dave", "W", OTHER, entry_point="cli:sync", asked="sync PersonIdentity 3 keys")
    assert str(info.value) == (
        "user 'dave' lacks the W right (run syncs) on district 312; they hold RW on district "
        "275; ask an administrator: selective-sync rights grant dave W --district 312"
    )
    with pytest.raises(RightsError) as info:
        team.require("dave", "R", ALL)
    assert str(info.value).startswith("user 'dave' lacks the R right (see the tool, the Sync ")
    assert str(info.value).endswith("selective-sync rights grant dave R --all-districts")
    # The grant suggested keeps what the user holds on that district (grant sets exactly).
    with pytest.raises(RightsError, match="grant dave RWD --district 275$"):
        team.require("dave", "D", OWN)
    recorded = refusals(url)
    assert [(r["user_name"], r["right_letter"], r["district"]) for r in recorded] == [
        ("rita", "W", OWN),
        ("dave", "W", OTHER),
        ("dave", "R", ALL),
        ("dave", "D", OWN),
    ]
    assert recorded[1]["entry_point"] == "cli:sync"
    assert recorded[1]["asked"] == "sync PersonIdentity 3 keys"
    assert recorded[1]["message"] == str(
        RightsError(
            "user 'dave' lacks the W right (run syncs) on district 312; they hold RW on "
            "district 275; ask an administrator: selective-sync rights grant dave W "
            "--district 312"
        )
    )
    assert isinstance(recorded[1]["at"], datetime)


def test_w_counts_as_r_for_reading_but_d_does_not(team):
    assert team.rights_of("walt", OWN) == {Right.W}  # stored exactly as granted
    team.require("walt", Right.R, OWN)
    team.require("walt", "r", ALL)
    team.require("dave", "r", OWN)
    assert [e.user for e in team.list_rights("walt")] == [
        "alice",
        "dave",
        "dina",
        "dora",
        "rita",
        "walt",
        "wendy",
    ]
    with pytest.raises(RightsError, match="'dora' lacks the R right"):
        team.list_rights("dora")
    with pytest.raises(RightsError, match="'dora' lacks the W right"):
        team.require("dora", Right.W, OWN)
    with pytest.raises(RightsError, match="'rita' lacks the D right"):
        team.require("rita", Right.D, OWN)
    with pytest.raises(RightsError, match="'wendy' lacks the D right"):
        team.require("wendy", Right.D, ALL)
    with pytest.raises(RightsError, match="'dina' lacks the R right .* on district 275"):
        team.require("dina", Right.R, OWN)


def test_a_district_grant_reaches_that_district_only(team):
    dave = team.actor("dave")
    assert dave.holds(Right.W, OWN) and dave.holds(Right.R, OWN)
    assert not dave.holds(Right.R, OTHER) and not dave.holds(Right.R, ALL)
    assert dave.scope(Right.R).districts == {OWN} and not dave.scope(Right.R).everywhere
    assert team.actor("rita").scope(Right.R).everywhere
    assert team.actor("dina").scope(Right.R).empty
    # A grant on all districts and one on a district add up on that district.
    team.grant("alice", "rita", "W", district=OTHER)
    assert team.rights_of("rita", OTHER) == {Right.R, Right.W}
    assert team.rights_of("rita", OWN) == {Right.R}
    assert team.rights_of("rita", ALL) == {Right.R}


def test_module_authorise_uses_the_configured_store_and_records_refusals(team, url):
    actor = require("wendy", Right.W, OWN, entry_point="flow:test")
    assert isinstance(actor, Actor) and actor.name == "wendy" and actor.entry_point == "flow:test"
    with pytest.raises(RightsError, match="'rita' lacks the W right"):
        require("rita", "W", OTHER, entry_point="flow:test", asked="sync Enrollment 1 key")
    (refusal,) = refusals(url)
    assert (refusal["entry_point"], refusal["asked"]) == ("flow:test", "sync Enrollment 1 key")
    with pytest.raises(BadInput, match="unknown right"):
        require("alice", "X", OWN)
    with pytest.raises(TypeError, match="district"):
        require("alice", "R")
    # An authorised actor passes through unread; its refusals are recorded all the same.
    dave = require("dave", entry_point="cli:history show")
    with pytest.raises(RightsError):
        require(dave, Right.R, OTHER, entry_point="ignored", asked="show an entry")
    assert refusals(url)[-1]["entry_point"] == "cli:history show"


def test_a_refusal_is_recorded_although_the_request_fails(team, url):
    """The refusal audit is written in a transaction of its own: the refused request's
    failure (the exception propagating to its caller) does not roll it back."""

    def request():
        require("dave", Right.W, OTHER, entry_point="flow:selective-sync", asked="sync")
        raise AssertionError("not reached")

    with pytest.raises(RightsError):
        request()
    # Another process (a new engine) sees it.
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        rows = conn.execute("SELECT user_name, district FROM selective_sync_refusals").fetchall()
    assert rows == [("dave", OTHER)]


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_once_then_refused(store, url):
    entry = store.bootstrap_admin("  alice  ")
    assert (entry.user, entry.district, entry.rights, entry.granted_by) == (
        "alice",
        ALL,
        "RWD",
        "alice",
    )
    assert store.rights_of("alice", OWN) == {Right.R, Right.W, Right.D}
    for user in ("alice", "mallory"):
        assert_refused_unchanged(
            url, RightsError, lambda u=user: store.bootstrap_admin(u), "already exists"
        )
    assert store.grants_of("mallory") == {}


def test_bootstrap_refused_even_when_the_only_admin_is_d_only(store, url):
    store.bootstrap_admin("alice")
    store.grant("alice", "dora", "D", district=ALL)
    store.grant("dora", "alice", "R", district=ALL)  # alice steps down; dora administers
    assert_refused_unchanged(url, RightsError, lambda: store.bootstrap_admin("mallory"))


# ---------------------------------------------------------------- grant / revoke


def test_grant_sets_exactly_and_letters_are_case_insensitive(team):
    assert team.grant("alice", "bob", "rwD", district=OWN).rights == "RWD"
    assert team.grant("alice", "bob", "r", district=OWN).rights == "R"
    assert team.rights_of("bob", OWN) == {Right.R}
    assert team.grant("alice", "bob", "W, R", district=OWN).rights == "RW"
    assert team.grants_of("bob") == {OWN: {Right.R, Right.W}}


@pytest.mark.parametrize("actor", ["rita", "walt", "wendy", "dave", "nobody", "ALICE"])
def test_grant_and_revoke_need_d(team, url, actor):
    err = assert_refused_unchanged(
        url,
        RightsError,
        lambda: team.grant(actor, "mallory", "RWD", district=ALL),
        "lacks the D right",
    )
    assert repr(actor) in str(err)
    assert_refused_unchanged(
        url, RightsError, lambda: team.grant(actor, actor, "RWD", district=OWN)
    )
    assert_refused_unchanged(url, RightsError, lambda: team.revoke(actor, "rita", district=ALL))
    assert_refused_unchanged(url, RightsError, lambda: team.revoke(actor, "dave", district=OWN))
    assert team.grants_of("mallory") == {}


def test_d_on_a_district_administers_that_district_only(team, url):
    assert team.grant("dina", "bob", "RW", district=OWN).granted_by == "dina"
    assert team.revoke("dina", "dave", district=OWN) == {Right.R, Right.W}
    for action, where in (
        (lambda: team.grant("dina", "bob", "R", district=OTHER), "district 312"),
        (lambda: team.grant("dina", "bob", "R", district=ALL), "all districts"),
        (lambda: team.grant("dina", "dina", "RWD", district=ALL), "all districts"),
        (lambda: team.revoke("dina", "rita", district=ALL), "all districts"),
    ):
        err = assert_refused_unchanged(url, RightsError, action, f"lacks the D right .* on {where}")
        assert err.refusal.entry_point in ("rights grant", "rights revoke")
    recorded = refusals(url)
    assert [(r["user_name"], r["right_letter"], r["district"]) for r in recorded] == [
        ("dina", "D", OTHER),
        ("dina", "D", ALL),
        ("dina", "D", ALL),
        ("dina", "D", ALL),
    ]
    assert recorded[0]["asked"] == "grant R to bob on district 312"
    assert recorded[3]["asked"] == "revoke the grant of rita on all districts"


def test_d_without_r_can_administer(team):
    team.grant("dora", "bob", "R", district=OWN)
    assert team.revoke("dora", "bob", district=OWN) == {Right.R}
    assert team.grants_of("bob") == {}


def test_revoke_removes_one_grant_and_a_missing_grant_is_refused(team, url):
    team.grant("alice", "wendy", "W", district=OWN)
    assert team.revoke("alice", "wendy", district=ALL) == {Right.R, Right.W}
    assert team.grants_of("wendy") == {OWN: {Right.W}}
    assert_refused_unchanged(
        url,
        BadInput,
        lambda: team.revoke("alice", "wendy", district=ALL),
        "user 'wendy' holds no grant on all districts; nothing to revoke",
    )
    assert_refused_unchanged(
        url, BadInput, lambda: team.revoke("alice", "dave", district=OTHER), "no grant on district"
    )


@pytest.mark.parametrize(
    "user, rights, district, match",
    [
        ("bob", "RX", OWN, "unknown right letter"),
        ("bob", "read", OWN, "unknown right letter"),
        ("bob", "", OWN, "no rights given"),
        ("bob", " , ", ALL, "no rights given"),
        ("", "R", OWN, "empty"),
        ("   ", "R", OWN, "empty"),
        ("bo\tb", "R", OWN, "control characters"),
        ("b\nob", "R", OWN, "control characters"),
        ("bob\x00", "R", OWN, "control characters"),
        ("bo\u202eb", "R", OWN, "control characters"),  # right-to-left override
        ("b" * 129, "R", OWN, "longer than 128"),
        ("bob", "R", 999, r"district 999 is not a known district: .* \(known: 275 MAPLE VALLEY, "),
        ("bob", "R", -3, "not a district number: -3"),
        ("bob", "R", "275", "not a district number: '275'"),
        ("bob", "R", True, "not a district number: True"),
    ],
)
def test_bad_input_refused_with_nothing_changed(team, url, user, rights, district, match):
    assert_refused_unchanged(
        url, BadInput, lambda: team.grant("alice", user, rights, district=district), match
    )


def test_a_district_registered_at_the_state_is_known(url, tmp_path, monkeypatch):
    """Known districts: configured here, or registered in the state's ``state_district``."""
    from selective_sync.initdb import create_state_schema

    state = tmp_path / "state.db"
    engine = create_engine(sqlite_url(state))
    create_state_schema(engine, {276: "BIRCH RIVER"})
    engine.dispose()
    monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", sqlite_url(state))
    with RightsStore.from_settings() as store:
        store.bootstrap_admin("alice")
        assert store.grant("alice", "bob", "R", district=276).district == 276
        with pytest.raises(BadInput, match="276 BIRCH RIVER, 312 CEDAR FALLS"):
            store.grant("alice", "bob", "R", district=277)


def test_bad_actor_names_refused(team, url):
    assert_refused_unchanged(
        url, BadInput, lambda: team.grant("", "bob", "R", district=OWN), "acting user"
    )
    assert_refused_unchanged(url, BadInput, lambda: team.list_rights("a\x1bb"), "control")


def test_names_are_stripped_and_case_sensitive(team):
    team.grant("alice", "  Bob ", "W", district=OWN)
    assert team.rights_of("Bob", OWN) == {Right.W}
    assert team.rights_of(" Bob", OWN) == {Right.W}
    assert team.rights_of("bob", OWN) == frozenset()
    assert team.rights_of("ALICE", OWN) == frozenset()
    team.grant(" alice ", "bob", "R", district=OWN)  # a different user
    assert team.rights_of("Bob", OWN) == {Right.W}


def test_max_length_and_unicode_names_are_kept_exactly(team):
    long_name = "ü" * 128
    team.grant("alice", long_name, "R", district=OWN)
    team.grant("alice", "Zoë O'Brien-李", "RW", district=ALL)
    by_user = {e.user: e.rights for e in team.list_rights("alice")}
    assert by_user[long_name] == "R" and by_user["Zoë O'Brien-李"] == "RW"


def test_last_administrator_of_all_districts_keeps_d(store, url):
    store.bootstrap_admin("alice")
    grant_rw = lambda: store.grant("alice", "alice", "RW", district=ALL)  # noqa: E731
    assert_refused_unchanged(url, RightsError, grant_rw, "only administrator")
    assert_refused_unchanged(
        url, RightsError, lambda: store.revoke("alice", "alice", district=ALL), "only"
    )
    # D on a district is no administrator of all districts.
    store.grant("alice", "dina", "RWD", district=OWN)
    assert_refused_unchanged(url, RightsError, grant_rw, "only administrator")
    store.grant("alice", "bob", "RWD", district=ALL)
    store.revoke("bob", "alice", district=ALL)  # with a second administrator it is allowed
    assert store.grants_of("alice") == {}


def test_audit_records_every_change_with_its_district(team):
    team.revoke("alice", "rita", district=ALL)
    log = team.audit_log("walt", limit=3)
    assert [(e.action, e.actor, e.user, e.district, e.old_rights, e.new_rights) for e in log] == [
        ("revoke", "alice", "rita", ALL, "R", None),
        ("grant", "alice", "dina", OWN, None, "D"),
        ("grant", "alice", "dave", OWN, None, "RW"),
    ]
    assert len(team.audit_log("alice")) == 8
    with pytest.raises(RightsError):
        team.audit_log("dora")


def test_lists_and_audits_are_scoped_to_the_readers_districts(team, url):
    team.grant("alice", "olga", "RW", district=OTHER)
    assert [(e.user, e.district) for e in team.list_rights("dave")] == [
        ("dave", OWN),
        ("dina", OWN),
    ]
    assert {e.district for e in team.list_rights("rita")} == {ALL, OWN, OTHER}
    assert [(e.user, e.district) for e in team.list_rights("rita", district=OTHER)] == [
        ("olga", OTHER)
    ]
    assert [e.user for e in team.audit_log("dave")] == ["dina", "dave"]
    assert [e.user for e in team.audit_log("rita", user="olga")] == ["olga"]
    assert_refused_unchanged(
        url,
        RightsError,
        lambda: team.list_rights("dave", district=OTHER),
        "'dave' lacks the R right .* on district 312",
    )
    assert_refused_unchanged(
        url, RightsError, lambda: team.audit_log("dina"), "'dina' lacks the R right"
    )


def test_refusals_are_listed_to_administrators_of_their_district(team, url):
    for user, right, district in (
        ("dave", "W", OTHER),
        ("rita", "W", OWN),
        ("walt", "D", ALL),
    ):
        with pytest.raises(RightsError):
            team.require(user, right, district, entry_point="flow:test", asked=f"ask {user}")
    every = team.refusals("alice")
    assert [(r.user, r.right, r.district, r.entry_point, r.asked) for r in every] == [
        ("walt", "D", ALL, "flow:test", "ask walt"),
        ("rita", "W", OWN, "flow:test", "ask rita"),
        ("dave", "W", OTHER, "flow:test", "ask dave"),
    ]
    assert every[2].message.startswith("user 'dave' lacks the W right (run syncs) on district 312")
    assert [r.user for r in team.refusals("dora", user="rita")] == ["rita"]
    assert [r.user for r in team.refusals("dora", district=OTHER)] == ["dave"]
    assert [r.user for r in team.refusals("alice", limit=1)] == ["walt"]
    assert [r.user for r in team.refusals("dina")] == ["rita"]  # D on 275: 275's only
    # Reading refusals needs D; a refused read is itself recorded.
    for reader, where in (("rita", "all districts"), ("dave", "all districts")):
        assert_refused_unchanged(
            url, RightsError, lambda u=reader: team.refusals(u), f"lacks the D right .* on {where}"
        )
    assert_refused_unchanged(
        url, RightsError, lambda: team.refusals("dina", district=OTHER), "on district 312"
    )
    assert refusals(url)[-1]["asked"] == "read the refusals"
    with pytest.raises(BadInput, match="limit"):
        team.refusals("alice", limit=0)


def test_parse_rights():
    assert parse_rights("dwr") == {Right.R, Right.W, Right.D}
    assert parse_rights(["R", "r"]) == {Right.R}


# ---------------------------------------------------------------- the move to districts


def make_old_store(url: str) -> None:
    """A store as written before grants had districts: one global grant per user, and an
    audit without a district column."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            mysql = engine.dialect.name in ("mysql", "mariadb")
            # The types the old code's SQLAlchemy DateTime() made on each database.
            when = "DATETIME" if mysql else "TIMESTAMP"
            conn.exec_driver_sql(
                "CREATE TABLE selective_sync_rights (user_name VARCHAR(128) PRIMARY KEY, "
                "rights VARCHAR(3) NOT NULL, granted_by VARCHAR(128) NOT NULL, "
                f"granted_at {when} NOT NULL)"
            )
            pk = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
            auto = " AUTO_INCREMENT" if mysql else ""
            conn.exec_driver_sql(
                f"CREATE TABLE selective_sync_rights_audit (id {pk} PRIMARY KEY{auto}, "
                f"at {when} NOT NULL, actor VARCHAR(128) NOT NULL, action VARCHAR(16) NOT "
                "NULL, user_name VARCHAR(128) NOT NULL, old_rights VARCHAR(3), new_rights "
                "VARCHAR(3))"
            )
            at = datetime(2026, 3, 1, 9, 30)
            for user, rights, by in (("alice", "RWD", "alice"), ("bob", "RW", "alice")):
                conn.execute(
                    legacy_rights_table.insert().values(
                        user_name=user, rights=rights, granted_by=by, granted_at=at
                    )
                )
            audit = [
                ("alice", "bootstrap", "alice", None, "RWD"),
                ("alice", "grant", "bob", None, "W"),
                ("alice", "grant", "bob", "W", "RW"),
            ]
            for actor, action, user, old, new in audit:
                conn.exec_driver_sql(
                    "INSERT INTO selective_sync_rights_audit (at, actor, action, user_name, "
                    "old_rights, new_rights) VALUES (%s, %s, %s, %s, %s, %s)".replace(
                        "%s", "?" if engine.dialect.paramstyle == "qmark" else "%s"
                    ),
                    (at, actor, action, user, old, new),
                )
    finally:
        engine.dispose()


def check_migrated(url: str) -> None:
    with RightsStore(url) as store:
        assert store.grants_of("alice") == {ALL: {Right.R, Right.W, Right.D}}
        assert store.grants_of("bob") == {ALL: {Right.R, Right.W}}
        assert store.actor("bob").holds(Right.W, OWN)
        listed = {(e.user, e.district, e.rights, e.granted_by) for e in store.list_rights("bob")}
        assert listed == {("alice", ALL, "RWD", "alice"), ("bob", ALL, "RW", "alice")}
        assert store.list_rights("bob")[0].granted_at.replace(tzinfo=None) == datetime(
            2026, 3, 1, 9, 30
        )
        log = store.audit_log("alice")
        # The history is kept (marked as changes on all districts), the move recorded.
        assert [(e.action, e.user, e.district, e.old_rights, e.new_rights) for e in log] == [
            ("migrate", "bob", ALL, "RW", "RW"),
            ("migrate", "alice", ALL, "RWD", "RWD"),
            ("grant", "bob", ALL, "W", "RW"),
            ("grant", "bob", ALL, None, "W"),
            ("bootstrap", "alice", ALL, None, "RWD"),
        ]
        assert log[0].actor == "(migration)"
        # After the move the store works as any other.
        store.grant("alice", "bob", "R", district=OWN)
        assert store.rights_of("bob", OWN) == {Right.R, Right.W}
    engine = create_engine(url)
    try:
        assert legacy_rights_table.name not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_global_grants_move_to_all_districts_on_first_use(url):
    make_old_store(url)
    check_migrated(url)
    # Again (a fresh store, a second process): nothing moves twice.
    with RightsStore(url) as again:
        assert len(again.audit_log("alice")) == 6
        assert again.grants_of("bob") == {ALL: {Right.R, Right.W}, OWN: {Right.R}}


def test_an_interrupted_move_is_finished_without_doubling(url):
    """MariaDB commits before DDL: a move cut after copying leaves the old table; the next
    store finishes it, skipping the grants already copied."""
    make_old_store(url)
    check_migrated(url)
    engine = create_engine(url)
    try:
        legacy_rights_table.create(engine)
        with engine.begin() as conn:
            conn.execute(
                legacy_rights_table.insert(),
                [
                    # Already moved (and changed since): the newer grant is kept.
                    dict(user_name="bob", rights="D", granted_by="x", granted_at=datetime.now()),
                    # Written by an older process after the move: moved now.
                    dict(
                        user_name="carl", rights="R", granted_by="alice", granted_at=datetime.now()
                    ),
                ],
            )
    finally:
        engine.dispose()
    with RightsStore(url) as store:
        assert store.grants_of("bob") == {ALL: {Right.R, Right.W}, OWN: {Right.R}}
        assert store.grants_of("carl") == {ALL: {Right.R}}
        assert [e.user for e in store.audit_log("alice") if e.action == "migrate"] == [
            "carl",
            "bob",
            "alice",
        ]


# ---------------------------------------------------------------- where the store lives


def test_default_store_is_beside_the_demo_or_in_the_state_database(tmp_path, monkeypatch):
    monkeypatch.delenv("SELECTIVE_SYNC_RIGHTS_URL", raising=False)
    monkeypatch.delenv("SELECTIVE_SYNC_STATE_URL", raising=False)
    monkeypatch.setenv("SELECTIVE_SYNC_DATA_DIR", str(tmp_path / "data"))
    # The demo keeps rights in DATA_DIR/rights.db (so regenerating the demo keeps them) and
    # never creates a stray empty state database.
    with pytest.raises(RightsError, match="alice"):
        require("alice", Right.R, OWN)
    assert (tmp_path / "data" / "rights.db").exists()
    assert not (tmp_path / "data" / "state.db").exists()

    # With a real state database configured, rights live there, and it must exist.
    monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", sqlite_url(tmp_path / "missing.db"))
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        require("alice", Right.R, OWN)
    assert not (tmp_path / "missing.db").exists()

    state = tmp_path / "state.db"
    sqlite3.connect(state).close()  # an existing (here empty) state database
    monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", sqlite_url(state))
    with RightsStore.from_settings() as s:
        s.bootstrap_admin("alice")
    assert dump(sqlite_url(state))[0][0][:3] == ("alice", ALL, "RWD")


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
    assert "RWD on all districts" in r.stdout
    r = cli("grant", "jgodfrey", "rw", "--district", "275", "--user", "alice")
    assert r.returncode == 0, r.stderr
    assert "jgodfrey now holds RW on district 275" in r.stdout
    r = cli("grant", "kim", "R", "--all-districts", "--user", "alice")
    assert r.returncode == 0 and "kim now holds R on all districts" in r.stdout, r.stderr

    r = cli("list", "--json", "--user", "jgodfrey")
    assert r.returncode == 0, r.stderr
    rows = {row["user"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {"jgodfrey"}  # a district reader sees their district's grants
    assert rows["jgodfrey"]["rights"] == "RW" and rows["jgodfrey"]["granted_by"] == "alice"
    assert rows["jgodfrey"]["district"] == 275 and not rows["jgodfrey"]["all_districts"]

    r = cli("list", "-u", "alice")
    assert r.returncode == 0 and "jgodfrey" in r.stdout and "RWD" in r.stdout
    assert "all districts" in r.stdout and "275" in r.stdout

    r = cli("revoke", "jgodfrey", "--district", "275", "-u", "alice")
    assert r.returncode == 0, r.stderr
    assert "revoked RW on district 275 from jgodfrey" in r.stdout
    with RightsStore(url) as s:  # and this process sees it too
        assert s.grants_of("jgodfrey") == {}

    r = cli("audit", "--json", "--of", "jgodfrey", "-u", "kim")
    assert r.returncode == 0, r.stderr
    audit = json.loads(r.stdout)
    assert [(a["action"], a["district"]) for a in audit] == [("revoke", 275), ("grant", 275)]


def test_cli_refusals_are_one_line_exit_1_change_nothing_and_are_listed(store, url):
    store.bootstrap_admin("alice")
    store.grant("alice", "rita", "R", district=ALL)
    store.grant("alice", "dina", "D", district=OWN)
    before = dump(url)
    # One of each kind of refusal (the store tests above cover every path in-process).
    attempts = {
        ("bootstrap", "mallory"): "already exists",
        ("grant", "mallory", "W", "--district", "275", "-u", "rita"): (
            "user 'rita' lacks the D right (delete history entries, clear the history and "
            "administer rights) on district 275; they hold R on all districts; ask an "
            "administrator: selective-sync rights grant rita D --district 275"
        ),
        ("grant", "mallory", "W", "--all-districts", "-u", "dina"): (
            "user 'dina' lacks the D right (delete history entries, clear the history and "
            "administer rights) on all districts; they hold D on district 275"
        ),
        ("grant", "mallory", "RZ", "--district", "275", "-u", "alice"): "unknown right letter",
        ("grant", "mallory", "R", "--district", "9999", "-u", "alice"): (
            "district 9999 is not a known district"
        ),
        ("grant", "mallory", "R", "-u", "alice"): "say where: --district N (one district) or",
        ("grant", "mallory", "R", "--district", "275", "--all-districts", "-u", "alice"): (
            "give either --district N or --all-districts, not both"
        ),
        ("revoke", "alice", "--all-districts", "-u", "alice"): "only administrator",
        ("revoke", "mallory", "--district", "275", "-u", "alice"): "holds no grant",
        ("list", "-u", "mallory"): "user 'mallory' lacks the R right",
        ("refusals", "-u", "rita"): "user 'rita' lacks the D right",
    }
    for args, expected in attempts.items():
        r = cli(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
        assert expected in lines[0], (args, lines[0])
    assert dump(url) == before
    r = cli("refusals", "--json", "-u", "alice")
    assert r.returncode == 0, r.stderr
    listed = [
        (x["user"], x["entry_point"], x["right"], x["district"]) for x in json.loads(r.stdout)
    ]
    assert listed == [
        ("rita", "cli:rights refusals", "D", None),
        ("mallory", "cli:rights list", "R", None),
        ("dina", "cli:rights grant", "D", None),
        ("rita", "cli:rights grant", "D", 275),
    ]
    r = cli("refusals", "-u", "dina")
    assert r.returncode == 0, r.stderr
    # D on 275: the refusal on 275 only (not the refusals on all districts).
    assert "cli:rights grant" in r.stdout and "rita" in r.stdout
    assert "cli:rights list" not in r.stdout and "cli:rights refusals" not in r.stdout


def test_cli_defaults_to_the_os_user(store):
    store.bootstrap_admin(getpass.getuser())
    r = cli("grant", "bob", "R", "--district", "275")  # no --user: acts as the OS user
    assert r.returncode == 0, r.stderr
    assert store.grants_of("bob") == {OWN: {Right.R}}
    assert store.audit_log("bob")[0].actor == getpass.getuser()


def test_cli_prints_user_names_literally_in_errors(url):
    r = cli("list", "-u", "[/x]")
    assert r.returncode == 1
    assert "user '[/x]' lacks the R right" in r.stderr


def test_cli_prints_user_names_literally_in_tables(store):
    store.bootstrap_admin("alice")
    store.grant("alice", "[bold]x[/bold]", "R", district=OWN)
    r = cli("list", "-u", "alice")
    assert r.returncode == 0, r.stderr
    assert "[bold]x[/bold]" in r.stdout


# ---------------------------------------------------------------- PostgreSQL and MariaDB


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_server_database_store(kind, url):
    with server_database(kind) as db_url:
        with RightsStore(db_url) as s:
            s.bootstrap_admin("alice")
            s.grant("alice", "Bob", "rw", district=ALL)
            s.grant("alice", "bob", "R", district=OWN)  # a different user: case-sensitive
            assert s.rights_of("Bob", OWN) == {Right.R, Right.W}
            assert s.rights_of("bob", OWN) == {Right.R}
            assert s.rights_of("BOB", OWN) == frozenset()
            s.grant("alice", "Zoë-李" + "x" * 123, "W", district=OTHER)
            before = dump(db_url)
            for action in (
                lambda: s.bootstrap_admin("mallory"),
                lambda: s.grant("bob", "mallory", "RWD", district=OWN),
                lambda: s.revoke("Bob", "alice", district=ALL),
                lambda: s.revoke("alice", "alice", district=ALL),
                lambda: s.list_rights("BOB"),
            ):
                with pytest.raises(RightsError):
                    action()
            assert dump(db_url) == before
            assert [(r["user_name"], r["district"]) for r in refusals(db_url)] == [
                ("bob", OWN),
                ("Bob", ALL),
                ("BOB", ALL),
            ]
        # A fresh store (new engine, tables already there) reads the same rights back.
        with RightsStore(db_url) as again:
            users = {(e.user, e.district): e.rights for e in again.list_rights("Bob")}
            assert users == {
                ("alice", ALL): "RWD",
                ("Bob", ALL): "RW",
                ("bob", OWN): "R",
                ("Zoë-李" + "x" * 123, OTHER): "W",
            }
            assert again.revoke("alice", "Bob", district=ALL) == {Right.R, Right.W}
            assert [e.action for e in again.audit_log("alice")][:2] == ["revoke", "grant"]
            assert [r.user for r in again.refusals("alice")] == ["BOB", "Bob", "bob"]


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_server_database_migration(kind, url):
    with server_database(kind) as db_url:
        make_old_store(db_url)
        check_migrated(db_url)


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_two_admins_demoting_each_other_at_once_leave_one(kind, url):
    """Row locks on the D holders: concurrent revokes can never leave nobody holding D on
    all districts."""
    with server_database(kind) as db_url:
        with RightsStore(db_url) as s:
            s.bootstrap_admin("alice")
            s.grant("alice", "bob", "RWD", district=ALL)
        for _round in range(5):
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def demote(actor: str, user: str, barrier=barrier, outcomes=outcomes) -> None:
                with RightsStore(db_url) as store:
                    store.grants_of(actor)  # connect and create-check before the race
                    barrier.wait()
                    try:
                        store.revoke(actor, user, district=ALL)
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
                holders = {u for u in ("alice", "bob") if Right.D in s.rights_of(u, ALL)}
                assert len(holders) == 1, outcomes
                assert outcomes.count("ok") == 1, outcomes
                # Restore two administrators for the next round.
                survivor = holders.pop()
                other = "bob" if survivor == "alice" else "alice"
                s.grant(survivor, other, "RWD", district=ALL)
