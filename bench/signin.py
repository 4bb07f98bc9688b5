"""What the sign-in adds to a request: nginx (``auth_basic``) and the gateway's stamping.

    .venv/bin/python bench/signin.py [--repeats 10] [--gets 200] [--keep]

Starts ``selective-sync ui`` (with its sign-in: nginx in front, the gateway around Prefect's
app) on a fresh demo, then, in the same run, interleaved, each path alternately:

- ``proxy``: through nginx as the demo's district user (Basic credentials): nginx checks the
  password, sets the identity headers; the gateway reads the user's grants, admits them and
  stamps the run;
- ``direct``: straight to the Prefect server with the service token (what the served
  deployments use): the gateway's token check only.

Measured: a plain ``GET /api/deployments/{id}`` (``--gets`` of each, median and p90 in ms),
and a 1-key ``POST /api/deployments/{id}/create_flow_run`` of sync-records until the run is
Completed, polled every 0.1 s over the same path (``--repeats`` of each after one warm-up;
the direct one carries the same ``acting-user`` tag itself, as only the service may). Printed:
the figures and the ratio proxy/direct.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
USER = "district275"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ui(out: Path) -> tuple[subprocess.Popen, str, str, str, str, dict]:
    from selective_sync.demo import generate_demo

    data = out / "data"
    generate_demo(data, persons=300, seed=7)
    manifest = json.loads((data / "manifest.json").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SELECTIVE_SYNC_"))}
    env.update(
        SELECTIVE_SYNC_DATA_DIR=str(data), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="0"
    )
    port, reports = free_port(), free_port()
    log = out / "ui.log"
    proc = subprocess.Popen(
        [str(BIN / "selective-sync"), "ui", "--port", str(port), "--reports-port", str(reports)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )
    deadline = time.monotonic() + 300
    while "Selective Sync is ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"selective-sync ui did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    printed = log.read_text()
    password = re.search(rf"^\s+{USER} / (\S+)", printed, re.M).group(1)
    internal = re.search(r"export PREFECT_API_URL=(\S+)", printed).group(1)
    token = (data / "sign-in" / "service-token").read_text().strip()
    return proc, f"http://127.0.0.1:{port}/api", internal, token, password, manifest


def one_sync(client: httpx.Client, deployment: str, key: int, stamp: bool) -> float:
    body: dict = {"parameters": {"object": "PersonIdentity", "ids": str(key)}}
    if stamp:
        body["tags"] = [f"acting-user:{USER}"]
    started = time.perf_counter()
    response = client.post(f"/deployments/{deployment}/create_flow_run", json=body)
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    while True:
        state = client.get(f"/flow_runs/{run_id}").json()["state"]
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            assert state["type"] == "COMPLETED", state
            return time.perf_counter() - started
        time.sleep(0.1)


def gets(client: httpx.Client, deployment: str, count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        client.get(f"/deployments/{deployment}").raise_for_status()
        took.append(time.perf_counter() - started)
    return took


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-signin-"))
    proc = None
    try:
        proc, public, internal, token, password, manifest = start_ui(out)
        key = manifest["PersonIdentity"]["mismatched"][0]
        proxy = httpx.Client(base_url=public, auth=(USER, password), timeout=60)
        direct = httpx.Client(
            base_url=internal, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        deployment = direct.get("/deployments/name/selective-sync/sync-records").json()["id"]
        clients = {"proxy": (proxy, False), "direct": (direct, True)}
        for client, stamp in clients.values():  # warm-up
            gets(client, deployment, 10)
            one_sync(client, deployment, key, stamp)
        get_times: dict[str, list[float]] = {"proxy": [], "direct": []}
        for _ in range(10):  # interleaved in blocks
            for name, (client, _stamp) in clients.items():
                get_times[name] += gets(client, deployment, max(1, args.gets // 10))
        sync_times: dict[str, list[float]] = {"proxy": [], "direct": []}
        for _ in range(args.repeats):
            for name, (client, stamp) in clients.items():
                sync_times[name].append(one_sync(client, deployment, key, stamp))
        print(f"sign-in overhead (selective-sync ui, {os.cpu_count()} CPUs, same run)")
        for name in ("direct", "proxy"):
            g, s = get_times[name], sync_times[name]
            print(
                f"  {name:6}  GET deployment: median {statistics.median(g) * 1000:6.1f} ms, "
                f"p90 {p90(g) * 1000:6.1f} ms (n={len(g)})   "
                f"1-key sync to Completed: median {statistics.median(s):5.2f} s, "
                f"min {min(s):5.2f}, max {max(s):5.2f} (n={len(s)})"
            )
        g_ratio = statistics.median(get_times["proxy"]) / statistics.median(get_times["direct"])
        s_ratio = statistics.median(sync_times["proxy"]) / statistics.median(sync_times["direct"])
        added = statistics.median(get_times["proxy"]) - statistics.median(get_times["direct"])
        print(
            f"  ratio proxy/direct: GET {g_ratio:.2f}x (+{added * 1000:.1f} ms), "
            f"sync {s_ratio:.2f}x"
        )
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if args.keep:
            print(f"kept {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
