"""Drift alerts end to end on a real `prefect server`: a Verification Summary run emits its
event, the automation made by `python -m flows.alerts setup` fires on it, and a webhook
notification block delivers the message to an HTTP receiver of this test on loopback."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selective_sync.alerts import ALERT_EVENTS, VERIFICATION_ALERT, VERIFICATION_OK
from selective_sync.reports.model import format_accuracy

from .harness import ADMIN, Server, clean_env, verify_keys

BLOCK = "drift-hook"
AUTOMATIONS = {"selective-sync: verification drift", "selective-sync: reconcile failures"}


class Receiver(ThreadingHTTPServer):
    """Collects the JSON bodies POSTed to it."""

    daemon_threads = True

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.arrived = threading.Condition()
        super().__init__(("127.0.0.1", 0), _Hook)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float, server: Server) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{len(self.messages)} of {count} notifications\n{server.logs()}")
                self.arrived.wait(left)
            return list(self.messages)


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.arrived:
            self.server.messages.append(json.loads(body))
            self.server.arrived.notify_all()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    srv = Receiver()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def events(server: Server, name: str) -> list[dict]:
    body = {"filter": {"event": {"name": [name]}}, "limit": 50}
    with server.http() as client:
        response = client.post("/events/filter", json=body)
        response.raise_for_status()
        return response.json()["events"]


def wait_event(server: Server, name: str, known: set[str], timeout: float = 120) -> dict:
    """The first event ``name`` not in ``known`` (ids)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [e for e in events(server, name) if e["id"] not in known]
        if fresh:
            return fresh[0]
        time.sleep(1)
    pytest.fail(f"no new {name} event after {timeout}s\n{server.logs()}")


def verify(server: Server, demo_data, **thresholds: str) -> None:
    """One run of the verification-summary flow (PersonIdentity), against the server: the
    flow's runs emit the drift events (the CLI's ``summary --reverify`` verifies without
    Prefect, and sends none)."""
    env = server.env(**demo_data.env(), **thresholds)
    code = (
        "from flows.verification_summary import verification_summary\n"
        f"verification_summary(objects=['PersonIdentity'], requested_by={ADMIN!r})\n"
    )
    done = server.run([sys.executable, "-c", code], env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_fires_through_the_webhook_block_only_when_a_threshold_is_crossed(
    server: Server, demo_data, receiver
):
    # The webhook block, made as an operator would (here in Python, against the server).
    make_block = (
        "from prefect.blocks.notifications import CustomWebhookNotificationBlock as B\n"
        f"B(name='drift', url={receiver.url!r}, "
        "json_data={'subject': '{{subject}}', 'body': '{{body}}'})"
        f".save({BLOCK!r}, overwrite=True)\n"
    )
    done = server.run([sys.executable, "-c", make_block])
    assert done.returncode == 0, done.stderr

    # No server: refused, nothing made.
    refused = server.run(
        [sys.executable, "-m", "flows.alerts", "setup", "--block", BLOCK], env=clean_env()
    )
    assert refused.returncode == 1 and "PREFECT_API_URL" in refused.stderr, refused.stderr
    missing = server.run([sys.executable, "-m", "flows.alerts", "setup", "--block", "nope"])
    assert missing.returncode == 1 and "does not exist" in missing.stderr, missing.stderr
    with server.http() as client:
        assert client.post("/automations/filter", json={}).json() == []

    # Twice: the second run updates the same two automations.
    ids = []
    for expected in ("created", "updated"):
        done = server.run([sys.executable, "-m", "flows.alerts", "setup", "--block", BLOCK])
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count(expected) == 2, done.stdout
        with server.http() as client:
            found = client.post("/automations/filter", json={}).json()
        assert {a["name"] for a in found} == AUTOMATIONS and len(found) == 2
        ids.append(sorted(a["id"] for a in found))
    assert ids[0] == ids[1]
    shown = server.run([sys.executable, "-m", "flows.alerts", "show"])
    assert shown.returncode == 0 and shown.stdout.count(": enabled (fires on") == 2, shown.stdout
    assert {a["trigger"]["expect"][0] for a in found} == set(ALERT_EVENTS)

    person = verify_keys(demo_data.dir, "PersonIdentity")
    accuracy = format_accuracy(person.distinct, person.errors)
    assert person.errors > 0

    # Crossed: accuracy below 99.99%.
    verify(server, demo_data, SELECTIVE_SYNC_ALERT_BELOW_PERCENT="99.99")
    alert = wait_event(server, VERIFICATION_ALERT, set())
    assert alert["resource"]["prefect.resource.id"] == "selective-sync.district.275"
    payload = alert["payload"]
    assert (payload["accuracy"], payload["errors"]) == (accuracy, person.errors)
    assert payload["crossed"] == ["accuracy_below"]
    [message] = receiver.wait_for(1, 180, server)
    assert "district 275 MAPLE VALLEY" in message["subject"]
    body = message["body"]
    assert f"District 275 MAPLE VALLEY: accuracy {accuracy}" in body
    assert f"{person.errors:,} errors" in body and "below 99.99%" in body
    assert "Thresholds crossed: accuracy_below" in body and alert["id"] in body

    # Not crossed (no drop since the last run, accuracy above 50%): the event says ok, and
    # nothing is sent.
    verify(
        server,
        demo_data,
        SELECTIVE_SYNC_ALERT_BELOW_PERCENT="50",
        SELECTIVE_SYNC_ALERT_DROP_POINTS="5",
    )
    ok = wait_event(server, VERIFICATION_OK, set())
    assert ok["payload"]["crossed"] == [] and ok["payload"]["change_points"] == 0
    assert ok["payload"]["previous_accuracy"] == accuracy

    # Crossed again: exactly one more message, and it is this alert's, not the ok event's.
    verify(server, demo_data, SELECTIVE_SYNC_ALERT_BELOW_PERCENT="99.99")
    second = wait_event(server, VERIFICATION_ALERT, {alert["id"]})
    messages = receiver.wait_for(2, 180, server)
    time.sleep(3)  # anything the ok event had set off would have arrived by now
    assert len(receiver.messages) == 2
    assert second["id"] in messages[1]["body"]
    assert all(ok["id"] not in m["body"] for m in receiver.messages)
