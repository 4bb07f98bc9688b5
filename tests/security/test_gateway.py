"""The sign-in gateway (flows/gateway.py) around a real Prefect server
(``python -m flows.prefect_server`` with ``SELECTIVE_SYNC_SIGN_IN=proxy``), over HTTP: who
may reach the UI and the API, the stamp a signed-in person's run gets, district-scoped
deletes, the per-district admission; the report server behind the proxy; and nginx (Debian's)
in front, as ``selective-sync ui`` runs it. In CI (``CI=true``) a missing nginx is a failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from selective_sync.identity import SECRET_HEADER, USER_HEADER
from selective_sync.identity.nginx import NGINX, Upstream, nginx_args, write_config
from selective_sync.identity.users import DISTRICT_USER, STATE_ADMIN, demo_users, grant_demo_rights
from selective_sync.rights import RightsStore
from selective_sync.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CLERK = "clerk275"  # RWD on 275 only: may delete 275's runs, not 312's


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Installation:
    """A Prefect server behind the gateway, on a copy of the two-district demo."""

    url: str
    data: Path
    secret: str
    token: str
    proc: subprocess.Popen
    log: Path
    passwords: dict[str, str]

    @property
    def api(self) -> str:
        return f"{self.url}/api"

    def as_user(self, user: str, secret: str | None = None) -> httpx.Client:
        headers = {USER_HEADER: user, SECRET_HEADER: secret or self.secret}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30)

    def as_service(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30)

    def settings(self) -> Settings:
        return Settings(data_dir=self.data)

    def refusal_count(self) -> int:
        with RightsStore.from_settings(self.settings()) as store:
            return len(store.refusals(STATE_ADMIN, limit=10_000))


def _start(tmp: Path, template: Path, serve_312: bool, seed_home) -> Installation:
    data = tmp / "data"
    shutil.copytree(template, data)
    users = demo_users(data / "sign-in")
    with RightsStore.from_settings(Settings(data_dir=data)) as store:
        grant_demo_rights(store, users)
        store.grant(STATE_ADMIN, CLERK, "RWD", district=275)
    secret, token = f"secret-{uuid.uuid4()}", f"token-{uuid.uuid4()}"
    port = _free_port()
    seed_home(tmp / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SELECTIVE_SYNC_"))}
    env.update(
        PREFECT_HOME=str(tmp / "home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        SELECTIVE_SYNC_DATA_DIR=str(data),
        SELECTIVE_SYNC_SIGN_IN="proxy",
        SELECTIVE_SYNC_PROXY_SECRET=secret,
        SELECTIVE_SYNC_SERVICE_TOKEN=token,
    )
    if serve_312:
        from selective_sync.demo import demo_districts

        env["SELECTIVE_SYNC_DISTRICTS"] = json.dumps(demo_districts(data))
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.prefect_server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Installation(
        f"http://127.0.0.1:{port}",
        data,
        secret,
        token,
        proc,
        log,
        {u.name: u.password for u in users},
    )


def _wait(inst: Installation, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert inst.proc.poll() is None, inst.log.read_text()[-3000:]
        try:
            if httpx.get(f"{inst.api}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"server not healthy:\n{inst.log.read_text()[-3000:]}")


def _stop(inst: Installation) -> None:
    if inst.proc.poll() is None:
        os.killpg(inst.proc.pid, 15)
        try:
            inst.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(inst.proc.pid, 9)


@pytest.fixture(scope="module")
def installations(
    two_district_template, tmp_path_factory, seed_prefect_home
) -> Iterator[dict[str, Installation]]:
    """One installation serving 275 only, one serving 275 and 312, started side by side."""
    template, seed = two_district_template, seed_prefect_home
    one = _start(tmp_path_factory.mktemp("gw-275"), template, serve_312=False, seed_home=seed)
    two = _start(tmp_path_factory.mktemp("gw-275-312"), template, serve_312=True, seed_home=seed)
    try:
        _wait(one)
        _wait(two)
        yield {"275": one, "275+312": two}
    finally:
        _stop(one)
        _stop(two)


@pytest.fixture(scope="module")
def inst(installations) -> Installation:
    return installations["275"]


@pytest.fixture(scope="module")
def deployment(inst) -> str:
    """A deployment whose flow takes requested_by and district (nothing serves it: its runs
    stay Scheduled, which is all the stamp needs)."""
    schema = {
        "type": "object",
        "properties": {
            "requested_by": {"type": "string", "default": ""},
            "district": {"type": "integer", "default": 0},
        },
    }
    with inst.as_service() as client:
        flow_id = client.post("/flows/", json={"name": "gateway-probe"}).raise_for_status().json()
        response = client.post(
            "/deployments/",
            json={"name": "probe", "flow_id": flow_id["id"], "parameter_openapi_schema": schema},
        )
        return response.raise_for_status().json()["id"]


def _runs(inst: Installation, deployment: str) -> list[dict]:
    with inst.as_service() as client:
        body = {"deployments": {"id": {"any_": [deployment]}}}
        return client.post("/flow_runs/filter", json=body).raise_for_status().json()


# ---------------------------------------------------------------- who may reach it


def test_nobody_reaches_the_ui_or_the_api_without_sign_in_or_the_token(inst):
    for method, path in [
        ("GET", "/"),
        ("GET", "/api/flows/"),
        ("POST", "/api/flow_runs/filter"),
        ("POST", "/api/deployments/filter"),
        ("GET", "/api/admin/settings"),
    ]:
        response = httpx.request(method, f"{inst.url}{path}", json={} if method == "POST" else None)
        assert response.status_code == 401, (path, response.text)
        assert "sign in" in response.json()["detail"]
    # As in Prefect: the health check stays open (probes, selective-sync ui's wait).
    assert httpx.get(f"{inst.api}/health").status_code == 200
    wrong = {"Authorization": "Bearer not-the-token"}
    assert httpx.post(f"{inst.api}/flows/filter", json={}, headers=wrong).status_code == 401


def test_the_service_token_is_accepted_as_prefects_client_sends_it(inst):
    with inst.as_service() as client:
        assert client.post("/flows/filter", json={}).status_code == 200
    # PREFECT_API_AUTH_STRING: Basic of the token (HTTP and the events websocket).
    basic = base64.b64encode(inst.token.encode()).decode()
    response = httpx.post(
        f"{inst.api}/flows/filter", json={}, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200


def test_an_identity_header_forged_from_outside_the_proxy_is_401(inst):
    response = httpx.post(f"{inst.api}/flows/filter", json={}, headers={USER_HEADER: STATE_ADMIN})
    assert response.status_code == 401
    assert "did not come from the sign-in proxy" in response.json()["detail"]
    with inst.as_user(STATE_ADMIN, secret="guessed") as client:
        assert client.post("/flows/filter", json={}).status_code == 401
    # A real user header beside the service token still needs the secret.
    headers = {USER_HEADER: STATE_ADMIN, "Authorization": f"Bearer {inst.token}"}
    assert httpx.post(f"{inst.api}/flows/filter", json={}, headers=headers).status_code == 401


def test_a_malformed_identity_header_is_400_with_the_reason(inst):
    with inst.as_user("") as client:
        response = client.post("/flows/filter", json={})
    assert response.status_code == 400
    assert "header is empty" in response.json()["detail"]
    # A soft hyphen (an invisible format character) would let two names look alike.
    headers = [(USER_HEADER, "ali\xadce".encode("latin-1")), (SECRET_HEADER, inst.secret)]
    response = httpx.post(f"{inst.api}/flows/filter", json={}, headers=headers)
    assert response.status_code == 400 and "control characters" in response.json()["detail"]
    headers = [(USER_HEADER, "a"), (USER_HEADER, "b"), (SECRET_HEADER, inst.secret)]
    response = httpx.post(f"{inst.api}/flows/filter", json={}, headers=headers)
    assert response.status_code == 400 and "exactly one" in response.json()["detail"]
    headers = [(USER_HEADER, "x" * 300), (SECRET_HEADER, inst.secret)]
    response = httpx.post(f"{inst.api}/flows/filter", json={}, headers=headers)
    assert response.status_code == 400 and "longer than" in response.json()["detail"]


# ---------------------------------------------------------------- the stamp


def test_a_run_a_person_creates_is_stamped_with_them(inst, deployment):
    with inst.as_user(DISTRICT_USER) as client:
        response = client.post(
            f"/deployments/{deployment}/create_flow_run",
            json={"parameters": {"district": 275}, "tags": ["mine"]},
        )
    assert response.status_code == 201, response.text
    run = response.json()
    assert f"acting-user:{DISTRICT_USER}" in run["tags"] and "mine" in run["tags"]
    # Their own run they may cancel.
    with inst.as_user(DISTRICT_USER) as client:
        cancel = client.post(
            f"/flow_runs/{run['id']}/set_state",
            json={"state": {"type": "CANCELLED"}, "force": True},
        )
    assert cancel.status_code == 201, cancel.text
    # A run created without a deployment is stamped too.
    with inst.as_service() as client:
        flow_id = client.get("/flows/name/gateway-probe").json()["id"]
    with inst.as_user(DISTRICT_USER) as client:
        response = client.post("/flow_runs/", json={"flow_id": flow_id, "parameters": {}})
    assert response.status_code == 201, response.text
    assert response.json()["tags"] == [f"acting-user:{DISTRICT_USER}"]


def test_a_body_claiming_another_user_is_refused_and_creates_nothing(inst, deployment):
    before = len(_runs(inst, deployment))
    with inst.as_user(DISTRICT_USER) as client:
        tagged = client.post(
            f"/deployments/{deployment}/create_flow_run",
            json={"parameters": {"district": 275}, "tags": [f"acting-user:{STATE_ADMIN}"]},
        )
        named = client.post(
            f"/deployments/{deployment}/create_flow_run",
            json={"parameters": {"district": 275, "requested_by": STATE_ADMIN}},
        )
    assert tagged.status_code == 403, tagged.text
    assert f"claims to act as {STATE_ADMIN}" in tagged.json()["detail"]
    assert f"signed in as {DISTRICT_USER}" in tagged.json()["detail"]
    assert named.status_code == 403 and "requested_by names" in named.json()["detail"]
    assert len(_runs(inst, deployment)) == before


def test_requested_by_naming_the_person_is_removed_the_stamp_says_it(inst, deployment):
    with inst.as_user(DISTRICT_USER) as client:
        response = client.post(
            f"/deployments/{deployment}/create_flow_run",
            json={"parameters": {"district": 275, "requested_by": f" {DISTRICT_USER} "}},
        )
    assert response.status_code == 201, response.text
    run = response.json()
    assert "requested_by" not in run["parameters"]
    assert run["tags"] == [f"acting-user:{DISTRICT_USER}"]


def test_a_person_may_not_restamp_a_run_nor_change_prefects_configuration(inst, deployment):
    with inst.as_service() as client:
        run = client.post(
            f"/deployments/{deployment}/create_flow_run", json={"parameters": {"district": 275}}
        ).json()
    with inst.as_user(DISTRICT_USER) as client:
        restamp = client.patch(
            f"/flow_runs/{run['id']}", json={"tags": [f"acting-user:{STATE_ADMIN}"]}
        )
        mine = client.patch(f"/flow_runs/{run['id']}", json={"tags": ["x"]})
        variable = client.post("/variables/", json={"name": "gw_probe", "value": "1"})
        pause = client.patch(f"/deployments/{deployment}", json={"paused": True})
        retry = client.post(
            f"/flow_runs/{run['id']}/set_state",
            json={"state": {"type": "CANCELLED"}, "force": True},
        )
    assert restamp.status_code == 403 and "claims to act as" in restamp.json()["detail"]
    assert mine.status_code == 403 and "only the runs they started" in mine.json()["detail"]
    assert retry.status_code == 403 and "only the runs they started" in retry.json()["detail"]
    assert variable.status_code == 403 and "needs D on all districts" in variable.json()["detail"]
    assert pause.status_code == 403
    with inst.as_user(STATE_ADMIN) as client:
        assert (
            client.post("/variables/", json={"name": "gw_probe", "value": "1"}).status_code == 201
        )


# ---------------------------------------------------------------- district-scoped deletes


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deleting_another_districts_run_or_artifact_is_refused_and_recorded(inst, deployment):
    with inst.as_service() as client:
        other = client.post(
            f"/deployments/{deployment}/create_flow_run", json={"parameters": {"district": 312}}
        ).json()
        own = client.post(
            f"/deployments/{deployment}/create_flow_run", json={"parameters": {"district": 275}}
        ).json()
        artifact = client.post(
            "/artifacts/",
            json={"type": "markdown", "data": "312's", "flow_run_id": other["id"]},
        ).json()
    ledger, refusals = _sha(inst.data / "state.db"), inst.refusal_count()
    with inst.as_user(CLERK) as client:
        run_delete = client.delete(f"/flow_runs/{other['id']}")
        artifact_delete = client.delete(f"/artifacts/{artifact['id']}")
        assert run_delete.status_code == 403, run_delete.text
        assert "D" in run_delete.json()["detail"] and "312" in run_delete.json()["detail"]
        assert artifact_delete.status_code == 403 and "312" in artifact_delete.json()["detail"]
        # Nothing went: the run, its artifact and the ledger are as they were.
        assert client.get(f"/flow_runs/{other['id']}").status_code == 200
        assert client.get(f"/artifacts/{artifact['id']}").status_code == 200
        assert _sha(inst.data / "state.db") == ledger
        assert inst.refusal_count() == refusals + 2
        # The same user's own district's run may go (D on 275).
        assert client.delete(f"/flow_runs/{own['id']}").status_code == 204
        assert client.get(f"/flow_runs/{own['id']}").status_code == 404
    # The district user without D may delete nothing, not even on 275.
    with inst.as_service() as client:
        theirs = client.post(
            f"/deployments/{deployment}/create_flow_run", json={"parameters": {"district": 275}}
        ).json()
    with inst.as_user(DISTRICT_USER) as client:
        assert client.delete(f"/flow_runs/{theirs['id']}").status_code == 403


# ---------------------------------------------------------------- per-district installations


def test_a_district_user_is_admitted_only_by_an_installation_of_their_district(installations):
    only_275, both = installations["275"], installations["275+312"]
    with only_275.as_user(DISTRICT_USER) as client:
        assert client.post("/flow_runs/filter", json={}).status_code == 200
    with both.as_user(DISTRICT_USER) as client:
        refused = client.post("/flow_runs/filter", json={})
        ui = httpx.get(both.url + "/", headers=dict(client.headers))
    assert refused.status_code == 403, refused.text
    assert "serves district(s) 275, 312" in refused.json()["detail"]
    assert "no R on 312" in refused.json()["detail"]
    assert ui.status_code == 403
    with both.as_user(STATE_ADMIN) as client:
        assert client.post("/flow_runs/filter", json={}).status_code == 200
    # A grant on 312 admits them (read again within a second); its revocation refuses.
    with RightsStore.from_settings(both.settings()) as store:
        store.grant(STATE_ADMIN, DISTRICT_USER, "R", district=312)
        time.sleep(1.1)
        with both.as_user(DISTRICT_USER) as client:
            assert client.post("/flow_runs/filter", json={}).status_code == 200
        store.revoke(STATE_ADMIN, DISTRICT_USER, district=312)
        time.sleep(1.1)
        with both.as_user(DISTRICT_USER) as client:
            assert client.post("/flow_runs/filter", json={}).status_code == 403


# ---------------------------------------------------------------- the report server


def test_the_report_server_answers_the_proxy_only(inst):
    from selective_sync.reports.server import make_server

    settings = Settings(data_dir=inst.data, sign_in="proxy", proxy_secret=inst.secret)
    server = make_server("127.0.0.1", 0, settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = f"{server.url}/reports/{uuid.uuid4()}.pdf"
    try:
        assert httpx.get(path).status_code == 401
        assert httpx.get(path, headers={USER_HEADER: STATE_ADMIN}).status_code == 401
        forged = {USER_HEADER: STATE_ADMIN, SECRET_HEADER: "guessed"}
        assert httpx.get(path, headers=forged).status_code == 401
        empty = {USER_HEADER: "", SECRET_HEADER: inst.secret}
        assert httpx.get(path, headers=empty).status_code == 400
        # A run the ledger does not know needs R on all districts: the district user is
        # refused (and it is recorded), the state administrator gets past the check.
        refusals = inst.refusal_count()
        district = httpx.get(path, headers={USER_HEADER: DISTRICT_USER, SECRET_HEADER: inst.secret})
        assert district.status_code == 403 and "R" in district.text
        assert inst.refusal_count() == refusals + 1
        admin = httpx.get(path, headers={USER_HEADER: STATE_ADMIN, SECRET_HEADER: inst.secret})
        assert admin.status_code == 404
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- nginx in front


def _need_nginx() -> None:
    if Path(NGINX).exists():
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{NGINX} is missing in CI (scripts/bootstrap.sh installs it)")
    pytest.skip(f"{NGINX} is missing (apt-get install nginx; scripts/bootstrap.sh)")


def test_nginx_signs_in_and_the_headers_a_client_sends_never_pass(inst, deployment, tmp_path):
    _need_nginx()
    port = _free_port()
    root = tmp_path / "nginx"
    conf = write_config(root, [Upstream("127.0.0.1", port, inst.url)], inst.secret, inst.passwords)
    proc = subprocess.Popen(nginx_args(conf, root), stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        assert httpx.get(f"{base}/api/flows/").status_code == 401  # nginx's own prompt
        assert "Basic" in httpx.get(f"{base}/").headers.get("www-authenticate", "")
        bad = (DISTRICT_USER, "wrong")
        assert httpx.get(f"{base}/api/flows/", auth=bad).status_code == 401
        auth = (DISTRICT_USER, inst.passwords[DISTRICT_USER])
        # The client claims to be the administrator in both identity headers: nginx
        # replaces them, so the run is the signed-in user's.
        claims = {USER_HEADER: STATE_ADMIN, SECRET_HEADER: "guessed"}
        response = httpx.post(
            f"{base}/api/deployments/{deployment}/create_flow_run",
            json={"parameters": {"district": 275}},
            auth=auth,
            headers=claims,
        )
        assert response.status_code == 201, response.text
        assert response.json()["tags"] == [f"acting-user:{DISTRICT_USER}"]
        assert httpx.get(f"{base}/", auth=auth).status_code == 200  # the UI
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------- websockets


def test_a_websocket_needs_the_token_in_prefects_handshake_or_the_proxy(inst):
    """Prefect's event subscribers send the token in their first message, not a header."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    url = inst.api.replace("http://", "ws://") + "/events/out"

    async def handshake(token: str, headers: dict | None = None) -> str:
        async with connect(url, subprotocols=["prefect"], additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            try:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
            except ConnectionClosed as closed:
                return f"closed {closed.rcvd.code if closed.rcvd else ''}"

    assert asyncio.run(handshake(inst.token)) == "auth_success"
    assert asyncio.run(handshake("guessed")) == "closed 1008"
    # The proxy's headers admit the browser (the token in the message is then not needed).
    signed_in = {USER_HEADER: STATE_ADMIN, SECRET_HEADER: inst.secret}
    assert asyncio.run(handshake("", signed_in)) == "auth_success"
    forged = {USER_HEADER: STATE_ADMIN, SECRET_HEADER: "guessed"}
    with pytest.raises(InvalidStatus):
        asyncio.run(handshake(inst.token, forged))
