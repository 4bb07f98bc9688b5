"""The sign-in's pure parts (selective_sync.identity): the trust policy of a request's
headers, the nginx configuration and htpasswd ``selective-sync ui`` writes, and the demo
users with their rights (a real rights store on the demo)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from selective_sync.errors import IdentityError
from selective_sync.identity import (
    SECRET_HEADER,
    USER_HEADER,
    identify,
    is_service,
    signed_in_user,
    stamp_of,
    stamp_tag,
)
from selective_sync.identity.admission import admission_refusal, run_district
from selective_sync.identity.nginx import Upstream, htpasswd, render, ssha
from selective_sync.identity.users import DISTRICT_USER, STATE_ADMIN, demo_users, grant_demo_rights
from selective_sync.rights import ALL_DISTRICTS, Actor, Right, RightsStore


def h(**pairs: str) -> list[tuple[bytes, bytes]]:
    names = {"user": USER_HEADER, "secret": SECRET_HEADER, "auth": "authorization"}
    return [(names[k].encode(), v.encode("latin-1")) for k, v in pairs.items()]


def test_the_user_header_counts_only_beside_the_proxys_secret():
    assert signed_in_user(h(user="alice", secret="s3"), "s3") == "alice"
    assert signed_in_user([], "s3") is None
    for headers in (h(user="alice"), h(user="alice", secret="no"), h(secret="no")):
        with pytest.raises(IdentityError) as caught:
            signed_in_user(headers, "s3")
        assert caught.value.status == 401
    # Without a configured secret nobody is signed in by header.
    with pytest.raises(IdentityError):
        signed_in_user(h(user="alice", secret=""), None)
    with pytest.raises(IdentityError) as caught:
        signed_in_user(h(secret="s3"), "s3")
    assert caught.value.status == 400


def test_the_service_token_as_bearer_or_basic_and_nothing_else():
    assert is_service(h(auth="Bearer tok"), "tok")
    assert is_service(h(auth="Basic " + base64.b64encode(b"tok").decode()), "tok")
    assert not is_service(h(auth="Bearer tok2"), "tok")
    assert not is_service(h(auth="Basic !!!"), "tok")
    assert not is_service(h(auth="Bearer tok"), None)
    assert identify(h(auth="Bearer tok"), "s3", "tok").service
    assert identify(h(user="bob", secret="s3"), "s3", "tok").user == "bob"
    with pytest.raises(IdentityError, match="sign in first") as caught:
        identify([], "s3", "tok")
    assert caught.value.status == 401


def test_the_stamp_round_trips():
    assert stamp_of(["x", stamp_tag("alice")]) == ["alice"]
    assert stamp_of(None) == []


def test_admission_needs_r_on_every_served_district():
    clerk = Actor.of("clerk", {275: frozenset({Right.R, Right.W})})
    state = Actor.of("state", {ALL_DISTRICTS: frozenset({Right.R})})
    assert admission_refusal(clerk, [275]) is None
    assert "no R on 312" in admission_refusal(clerk, [275, 312])
    assert admission_refusal(state, [275, 312]) is None


def test_the_district_of_a_run():
    assert run_district({"district": 312}, 275) == 312
    assert run_district({"district": 0}, 275) == 275
    assert run_district({"district": True}, 275) == ALL_DISTRICTS
    assert run_district({"all_districts": True, "district": 275}, 275) == ALL_DISTRICTS
    assert run_district({}, 275) == ALL_DISTRICTS
    assert run_district(None, 275) == ALL_DISTRICTS


def test_ssha_hashes_are_what_nginx_reads():
    line = ssha("pw")
    raw = base64.b64decode(line.removeprefix("{SSHA}"))
    digest, salt = raw[:20], raw[20:]
    assert hashlib.sha1(b"pw" + salt).digest() == digest and line != ssha("pw")
    assert htpasswd({"a": "1"}).startswith("a:{SSHA}")
    with pytest.raises(ValueError):
        htpasswd({"a:b": "1"})


def test_nginx_sets_the_identity_headers_itself(tmp_path):
    conf = render(tmp_path, [Upstream("127.0.0.1", 4200, "http://127.0.0.1:5000")], "S", tmp_path)
    assert f"proxy_set_header {USER_HEADER} $remote_user;" in conf
    assert f'proxy_set_header {SECRET_HEADER} "S";' in conf
    assert 'proxy_set_header Authorization "";' in conf
    assert "listen 127.0.0.1:4200;" in conf and "daemon off;" in conf


def test_the_demo_users_keep_their_passwords_and_get_their_rights(demo, tmp_path):
    folder = demo.dir / "sign-in"
    first = demo_users(folder)
    assert [u.name for u in first] == [STATE_ADMIN, DISTRICT_USER]
    assert demo_users(folder) == first  # kept
    assert (folder / "demo-users.json").stat().st_mode & 0o077 == 0
    assert set(json.loads((folder / "demo-users.json").read_text())) == {STATE_ADMIN, DISTRICT_USER}
    with RightsStore.from_settings() as store:
        store.bootstrap_admin("operator")  # someone administers already: they grant
        grant_demo_rights(store, first)
        assert store.has(STATE_ADMIN, Right.D, ALL_DISTRICTS)
        assert store.has(DISTRICT_USER, Right.W, 275)
        assert not store.has(DISTRICT_USER, Right.D, 275)
        assert not store.has(DISTRICT_USER, Right.R, ALL_DISTRICTS)
        grant_demo_rights(store, first)  # again at the next start: the same grants
