"""The gateway around Prefect's server app: nobody reaches the UI or the API without
signing in through the proxy or holding the service token, and a run a person creates is
stamped with who they are.

An ASGI layer (``Gateway``) outside Prefect's app (and its ``RetryBusy`` retry layer,
``flows.prefect_server``), on when ``SELECTIVE_SYNC_SIGN_IN=proxy``:

* Every HTTP request and websocket must carry the proxy's secret with a user header (a
  signed-in person) or the service token (``Authorization: Bearer <token>``, or ``Basic``
  of it: what Prefect's client sends for ``PREFECT_API_KEY`` / ``PREFECT_API_AUTH_STRING``);
  otherwise 401. A user header without the secret (forged from outside the proxy) is 401;
  a malformed one 400. A websocket without either header may still present the token in
  Prefect's own first ``auth`` message (Prefect's event subscribers do).
* A signed-in person is admitted only with R on every district the installation serves
  (``selective_sync.identity.admission``); otherwise 403.
* Creating a flow run (``POST /api/deployments/{id}/create_flow_run``,
  ``POST /api/flow_runs/``): the body's tags get ``acting-user:<name>``; a tag naming
  anyone else, or a ``requested_by`` parameter naming anyone else, is refused 403 (a
  client must never believe it acted as someone it is not); a ``requested_by`` naming the
  person is removed (the stamp says it). Editing a run's tags (``PATCH``) follows the
  same rule, and a person without D on all districts may edit, cancel or retry (set its
  state) only the runs stamped with their name: a retried run acts as its stamp again.
* Deleting a flow run or artifact (``DELETE /api/flow_runs/{id}``, ``/api/artifacts/{id}``)
  needs D on the run's district (its ``district`` parameter); a refusal is recorded in the
  refusal audit and nothing is deleted.
* Besides reading, starting runs and those deletes, a person without D on all districts
  may change nothing in Prefect (deployments, work pools, blocks, variables, automations,
  concurrency limits): 403. State administrators may.
* Health checks (``GET /api/health``, ``/api/ready``) are open, as in Prefect.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import anyio
import httpx

from flows.prefect_server import App, Message, Receive, Scope, Send, _read_body, _replay
from selective_sync.errors import BadInput, IdentityError, SelectiveSyncError
from selective_sync.identity import STAMP_PREFIX, identify, stamp_tag
from selective_sync.identity.admission import admission_refusal, run_district
from selective_sync.rights import ALL_DISTRICTS, Actor, Right, RightsStore
from selective_sync.settings import Settings, configured_districts, get_settings

log = logging.getLogger("selective_sync.gateway")
ENTRY_POINT = "prefect-api"
# A person's grants are read again after this long: the UI sends bursts of requests, and a
# revoked right takes effect within it.
GRANTS_FOR_S = 1.0
OPEN = {"/api/health", "/api/ready"}
_UUID = r"[0-9a-fA-F-]{36}"
CREATE_FROM_DEPLOYMENT = re.compile(rf"^/api/deployments/({_UUID})/create_flow_run/?$")
CREATE_RUN = re.compile(r"^/api/flow_runs/?$")
PATCH_RUN = re.compile(rf"^/api/flow_runs/({_UUID})/?$")
RUN_STATE = re.compile(rf"^/api/flow_runs/({_UUID})/(set_state|resume)/?$")
DELETE_RUN = re.compile(rf"^/api/flow_runs/({_UUID})/?$")
DELETE_ARTIFACT = re.compile(rf"^/api/artifacts/({_UUID})/?$")
# What a person without D on all districts may send besides GET: reads that Prefect's UI
# posts (filters, counts, pages, histories, schema checks) and starting/cancelling runs.
READS = re.compile(
    r"^/api/(.*/)?(filter|count|paginate|history|lineage|latest|next_runs|validate|lateness)/?$"
    r"|^/api/ui/|^/api/events/count-by/"
    r"|^/api/flow_runs/[0-9a-fA-F-]{36}/input/filter/?$"
)


class Gateway:
    """ASGI layer: identity, admission, the stamp and district-scoped deletes (above)."""

    def __init__(self, app: App, settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        self.app = app
        self.secret = _secret(settings.proxy_secret)
        self.token = _secret(settings.service_token)
        self.served = [d.number for d in configured_districts(settings)]
        self.default = self.served[0] if self.served else ALL_DISTRICTS
        self.rights = RightsStore.from_settings(settings)
        self._actors: dict[str, tuple[float, Actor]] = {}
        self.inner = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if kind == "http" and path in OPEN and scope.get("method") in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        try:
            identity = identify(scope.get("headers", []), self.secret, self.token)
        except IdentityError as exc:
            if kind == "websocket" and exc.status == 401 and not _claims_user(scope):
                return await self.app(scope, self._handshake(receive, send), send)
            return await _refuse(scope, send, exc.status, str(exc))
        if identity.service:
            return await self.app(scope, receive, send)
        try:
            actor = await self._actor(identity.user)
            refusal = admission_refusal(actor, self.served)
        except SelectiveSyncError as exc:
            log.error("rights check failed: %s", exc)
            return await _refuse(scope, send, 503, "the rights store is unavailable")
        if refusal:
            return await _refuse(scope, send, 403, refusal)
        if kind != "http":
            return await self.app(scope, receive, send)
        return await self._person(scope, receive, send, actor)

    async def _actor(self, user: str) -> Actor:
        """The person with their grants, read at most every GRANTS_FOR_S seconds."""
        now = time.monotonic()
        cached = self._actors.get(user)
        if cached is not None and now - cached[0] < GRANTS_FOR_S:
            return cached[1]
        actor = await anyio.to_thread.run_sync(self.rights.actor, user, ENTRY_POINT)
        if len(self._actors) > 1000:
            self._actors.clear()
        self._actors[user] = (now, actor)
        return actor

    # ---- a signed-in person's HTTP request

    async def _person(self, scope: Scope, receive: Receive, send: Send, actor: Actor) -> None:
        method, path = scope.get("method", "GET"), scope.get("path", "")
        if method in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        try:
            if method == "POST" and (CREATE_FROM_DEPLOYMENT.match(path) or CREATE_RUN.match(path)):
                body = _stamped(body, actor.name)
            elif method == "POST" and (match := RUN_STATE.match(path)):
                # Retrying a run runs it again as its stamp: only its own user may.
                await self._own_run_or_admin(actor, match.group(1), body)
            elif method == "PATCH" and PATCH_RUN.match(path):
                body = _stamped(body, actor.name, only_if_tags=True)
                await self._own_run_or_admin(actor, PATCH_RUN.match(path).group(1), body)
            elif method == "DELETE" and (DELETE_RUN.match(path) or DELETE_ARTIFACT.match(path)):
                await self._may_delete(actor, path)
            elif not READS.match(path) and not actor.holds(Right.D, ALL_DISTRICTS):
                raise _Refused(
                    403,
                    f"{actor.name} may not change Prefect's configuration ({method} {path}): "
                    "that needs D on all districts",
                )
        except _Refused as exc:
            return await _refuse(scope, send, exc.status, exc.message)
        await self.app(_with_length(scope, body), _replay(body, receive), send)

    async def _may_delete(self, actor: Actor, path: str) -> None:
        """D on the district of the run (or the artifact's run) being deleted, or 403."""
        run_id = None
        if match := DELETE_ARTIFACT.match(path):
            artifact = await self._read(f"/api/artifacts/{match.group(1)}")
            run_id = (artifact or {}).get("flow_run_id")
            if artifact is None:
                return  # Prefect answers 404 itself
        else:
            run_id = DELETE_RUN.match(path).group(1)
        run = await self._read(f"/api/flow_runs/{run_id}") if run_id else None
        if run_id and run is None:
            return
        district = run_district((run or {}).get("parameters"), self.default)
        if actor.holds(Right.D, district):
            return
        refusal = await anyio.to_thread.run_sync(
            lambda: actor.refuse(Right.D, district, asked=f"DELETE {path}")
        )
        raise _Refused(403, str(refusal))

    async def _own_run_or_admin(self, actor: Actor, run_id: str, body: bytes) -> None:
        """A person may edit only runs stamped with their own name (administrators any)."""
        if actor.holds(Right.D, ALL_DISTRICTS):
            return
        run = await self._read(f"/api/flow_runs/{run_id}")
        if run is None:
            return
        if stamp_tag(actor.name) not in (run.get("tags") or []):
            raise _Refused(
                403, f"{actor.name} may edit, cancel or retry only the runs they started"
            )

    async def _read(self, path: str) -> dict[str, Any] | None:
        response = await self.inner.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    # ---- a websocket that authenticates in its first message (Prefect's subscribers)

    def _handshake(self, receive: Receive, send: Send) -> Receive:
        checked = False

        async def checked_receive() -> Message:
            nonlocal checked
            message = await receive()
            if checked or message["type"] != "websocket.receive":
                return message
            checked = True
            token = _auth_token(message)
            if self.token and token is not None and _same(token, self.token):
                return message
            await send({"type": "websocket.close", "code": 1008, "reason": "Unauthorized"})
            return {"type": "websocket.disconnect", "code": 1008}

        return checked_receive

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.rights.close()


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _stamped(body: bytes, user: str, only_if_tags: bool = False) -> bytes:
    """The run body with ``acting-user:<user>`` in its tags; 403 for a claim of anyone else,
    400 for a body that is not a JSON object."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise _Refused(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise _Refused(400, "the request body must be a JSON object")
    if only_if_tags and "tags" not in data:
        return body
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _Refused(400, "tags must be a list of text")
    claimed = sorted({t[len(STAMP_PREFIX) :] for t in tags if t.startswith(STAMP_PREFIX)})
    others = [c for c in claimed if c != user]
    if others:
        raise _Refused(
            403,
            f"this request claims to act as {', '.join(others)}; you are signed in as {user} "
            "and runs you start act as you",
        )
    params = data.get("parameters")
    if isinstance(params, dict) and "requested_by" in params:
        named = params.get("requested_by")
        if isinstance(named, str) and named.strip() and named.strip() != user:
            raise _Refused(
                403,
                f"requested_by names {named.strip()!r}; you are signed in as {user} and "
                "runs you start act as you (leave requested_by out)",
            )
        params = {k: v for k, v in params.items() if k != "requested_by"}
        data["parameters"] = params
    data["tags"] = [*[t for t in tags if not t.startswith(STAMP_PREFIX)], stamp_tag(user)]
    return json.dumps(data).encode()


def _with_length(scope: Scope, body: bytes) -> Scope:
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
    return {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}


def _claims_user(scope: Scope) -> bool:
    from selective_sync.identity import SECRET_HEADER, USER_HEADER

    names = {USER_HEADER.encode(), SECRET_HEADER.encode()}
    return any(k.lower() in names for k, _ in scope.get("headers", []))


def _auth_token(message: Message) -> str | None:
    text = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == "auth" and isinstance(data.get("token"), str):
        return data["token"]
    return None


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    log.info("refused %s %s: %s %s", scope.get("method", "WS"), scope.get("path"), status, message)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
        return
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wrap(app: App, settings: Settings | None = None) -> App:
    """``app`` behind the gateway when sign-in is on (else ``app`` itself)."""
    settings = settings or get_settings()
    if settings.sign_in != "proxy":
        return app
    if settings.proxy_secret is None or settings.service_token is None:
        raise BadInput(
            "SELECTIVE_SYNC_SIGN_IN=proxy needs SELECTIVE_SYNC_PROXY_SECRET and "
            "SELECTIVE_SYNC_SERVICE_TOKEN"
        )
    return Gateway(app, settings)
