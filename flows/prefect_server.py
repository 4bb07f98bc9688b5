"""The tool's own Prefect server: ``prefect server start``, with requests that lost a race
for the SQLite database run again inside the server instead of answered 503.

``python -m flows.prefect_server --host 127.0.0.1 --port 4200`` serves what
``prefect server start`` serves (Prefect's app: API, UI and background services, on
uvicorn, with the same settings), for ``selective-sync ui``.

Why: on SQLite, Prefect's server answers ``503 Service Unavailable`` when the database
refuses a transaction as busy, and leaves the retry to the client. The usual case is a
transaction that read, then tried to write after another connection had committed
(``create_flow_run`` reads the deployment, then inserts the run): SQLite refuses that at
once (SQLITE_BUSY_SNAPSHOT, "database is locked"), whatever the busy timeout, because the
transaction's snapshot is stale. With served runs, the runner's polls and the runs' events
writing all the time, about one Submit in 15 answered 503. Prefect's Python client retries
503s; the UI's Submit does not, and shows the error. The refused transaction was rolled
back, so running the request again is what Prefect's own client would do; this server
does it before answering (for up to RETRY_FOR_S, short pauses between), so every client,
the browser included, gets the real answer.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

BUSY = 503  # what Prefect answers for a retryable database error (server.py)
# Run again for up to this long (a burst of 100 Submits with runs writing beside them kept
# a request busy through five retries, 1.5 s, and once past 15 s), pausing 0.05 s, then
# twice as long each time up to 1 s, with jitter so that requests refused together do not
# retry together. A Submit that waits is better than one that fails.
RETRY_FOR_S = 30.0
PAUSE_S = 0.05
MAX_PAUSE_S = 1.0
log = logging.getLogger("selective_sync.prefect_server")


class RetryBusy:
    """ASGI middleware: an HTTP request the app answers 503 is run again (its body replayed)
    for up to ``retry_for_s``; the client sees the first other answer, or the last 503."""

    def __init__(
        self,
        app: App,
        retry_for_s: float = RETRY_FOR_S,
        pause_s: float = PAUSE_S,
        max_pause_s: float = MAX_PAUSE_S,
    ) -> None:
        self.app, self.retry_for_s = app, retry_for_s
        self.pause_s, self.max_pause_s = pause_s, max_pause_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        deadline = time.monotonic() + self.retry_for_s
        pause = self.pause_s
        while time.monotonic() + pause < deadline:
            if not await self._attempt(_fresh(scope), _replay(body, receive), send):
                return
            log.debug(
                "%s %s answered %s (database busy): running it again",
                scope.get("method"),
                scope.get("path"),
                BUSY,
            )
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, self.max_pause_s)
        await self._last(_fresh(scope), _replay(body, receive), send)

    async def _last(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The last attempt, answered whatever it is. An error raised after its answer was
        sent is logged here: raised to uvicorn, it closes the connection, and the client's
        next request on that kept-alive connection is reset (seen in a burst of 100)."""
        answered = False

        async def track(message: Message) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, track)
        except Exception:
            if not answered:
                raise
            log.exception("%s %s failed after it was answered", scope.get("method"), scope["path"])

    async def _attempt(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Run the request once; True when it was answered 503 (and nothing was sent)."""
        busy = False

        async def hold_busy(message: Message) -> None:
            nonlocal busy
            if message["type"] == "http.response.start" and message["status"] == BUSY:
                busy = True
            if not busy:
                await send(message)

        try:
            await self.app(scope, receive, hold_busy)
        except Exception:
            # Starlette sends the handler's 503, then raises the error again for the
            # server to log: a request to be run again has nothing to log yet.
            if not busy:
                raise
        return busy


def _fresh(scope: Scope) -> Scope:
    """The request's scope as the server gave it: routing writes into a scope (a mount
    adds its prefix to ``root_path``), so each attempt gets its own copy."""
    fresh = dict(scope)
    if isinstance(scope.get("state"), dict):
        fresh["state"] = dict(scope["state"])
    return fresh


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away first
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then waits on the client's (which
    only says when it disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def create_app() -> App:
    """Prefect's server app (API, UI, services), as ``prefect server start`` makes it,
    behind the sign-in gateway when ``SELECTIVE_SYNC_SIGN_IN=proxy`` (flows/gateway.py)."""
    from prefect.server.api.server import create_app as prefect_app

    from flows.gateway import wrap

    return wrap(RetryBusy(prefect_app(final=True)))


def main(argv: list[str] | None = None) -> None:
    """Run the server until interrupted, as ``prefect server start --host --port`` does."""
    import uvicorn
    from prefect.settings import get_current_settings

    parser = argparse.ArgumentParser(prog="python -m flows.prefect_server", description=__doc__)
    parser.add_argument("--host", default=None, help="Default: PREFECT_SERVER_API_HOST.")
    parser.add_argument("--port", type=int, default=None, help="Default: PREFECT_SERVER_API_PORT.")
    args = parser.parse_args(argv)
    server = get_current_settings().server
    uvicorn.run(
        create_app(),
        host=args.host or server.api.host,
        port=args.port or server.api.port,
        timeout_keep_alive=server.api.keepalive_timeout,
        ws_ping_interval=server.api.websocket_ping_interval,
        ws_ping_timeout=server.api.websocket_ping_timeout,
        log_level=server.logging_level.lower(),
    )


if __name__ == "__main__":
    main()
