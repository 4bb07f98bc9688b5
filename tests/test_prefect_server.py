"""The tool's own Prefect server runs a request again when SQLite was busy, instead of
answering 503 (flows/prefect_server.py).

The app below fails the way Prefect's API fails when its SQLite database refuses a
transaction: the endpoint raises SQLAlchemy's OperationalError over sqlite3's "database is
locked", and Prefect's own handler (``custom_internal_exception_handler``) answers 503,
after which Starlette raises the error again for the server to log. It is mounted under
``/api`` as Prefect's API is (routing writes into the request's scope). The burst check of
``bench/latency.py --burst 100`` proves the same against the real server.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest
import sqlalchemy.exc
from prefect.server.api.server import custom_internal_exception_handler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from flows.prefect_server import RetryBusy


def busy_error() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError(
        "INSERT INTO flow_run ...", {}, sqlite3.OperationalError("database is locked")
    )


def prefect_like_app(busy_times: int, calls: list):
    """An API whose endpoint is refused ``busy_times`` times, then creates (201)."""

    async def create(request: Request) -> JSONResponse:
        calls.append(await request.body())
        if len(calls) <= busy_times:
            raise busy_error()
        return JSONResponse({"attempt": len(calls), "got": json.loads(calls[-1])}, 201)

    async def conflict(request: Request) -> JSONResponse:
        calls.append(await request.body())
        return JSONResponse({"detail": "no"}, 409)

    async def broken(request: Request) -> JSONResponse:
        calls.append(b"")
        raise RuntimeError("not a database fault")

    api = Starlette(
        routes=[
            Route("/deployments/{id}/create_flow_run", create, methods=["POST"]),
            Route("/conflict", conflict, methods=["POST"]),
            Route("/broken", broken, methods=["GET"]),
        ],
        exception_handlers={Exception: custom_internal_exception_handler},
    )
    return RetryBusy(Starlette(routes=[Mount("/api", app=api)]), retry_for_s=0.5, pause_s=0.01)


def send(app, method: str, path: str, body: dict | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, json=body)

    return asyncio.run(go())


def test_a_busy_answer_is_retried_with_the_same_body_and_the_client_gets_the_real_one():
    calls: list[bytes] = []
    app = prefect_like_app(busy_times=3, calls=calls)
    body = {"parameters": {"ids": "1, 2, 3", "object": "PersonIdentity"}}
    response = send(app, "POST", "/api/deployments/abc/create_flow_run", body)
    assert response.status_code == 201, response.text
    assert response.json() == {"attempt": 4, "got": body}
    assert len(calls) == 4 and len(set(calls)) == 1  # the same body, four times


def test_busy_past_the_retry_time_is_answered_503():
    import time

    calls: list[bytes] = []
    app = prefect_like_app(busy_times=10_000, calls=calls)
    started = time.monotonic()
    response = send(app, "POST", "/api/deployments/abc/create_flow_run", {"parameters": {}})
    assert response.status_code == 503
    assert response.json() == {"exception_message": "Service Unavailable"}
    # Retried with growing pauses for the 0.5 s it was given, then answered.
    assert 3 <= len(calls) <= 10, len(calls)
    assert 0.2 <= time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("method", "path", "status"), [("POST", "/api/conflict", 409), ("GET", "/api/broken", 500)]
)
def test_other_answers_are_not_retried(method, path, status):
    calls: list[bytes] = []
    app = prefect_like_app(busy_times=0, calls=calls)
    response = send(app, method, path, {"x": 1} if method == "POST" else None)
    assert response.status_code == status
    assert len(calls) == 1


def test_a_connection_stays_open_after_a_503_past_the_retry_time():
    """Through a real uvicorn: an error Starlette raises again after the 503 was sent used
    to reach uvicorn, which then closed the connection, and the client's next request on it
    was reset. Now the next request on the same connection is answered."""
    import socket
    import threading

    import uvicorn

    calls: list[bytes] = []
    app = prefect_like_app(busy_times=10_000, calls=calls)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(100):
                try:
                    client.get("/api/none")
                    break
                except httpx.ConnectError:
                    threading.Event().wait(0.05)
            first = client.post("/api/deployments/abc/create_flow_run", json={"parameters": {}})
            assert first.status_code == 503
            second = client.post("/api/conflict", json={"x": 1})  # the same connection
            assert second.status_code == 409
            assert second.extensions["network_stream"] is first.extensions["network_stream"]
    finally:
        server.should_exit = True
        thread.join(10)
