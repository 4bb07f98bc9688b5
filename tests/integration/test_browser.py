"""The tool as a user opens it: ``selective-sync ui`` (a real Prefect server, every deployment
served, the report server), then Debian's Chromium driven by Playwright through the V2 UI
(Prefect 3.9's default) and once through the V1 UI: the Selective Sync form filled by its
labels, the run, and the request's row in the district's Sync History. Then (TestSignIn)
``selective-sync ui`` with its sign-in: the browser signs in through nginx as each demo
user, and the runs and the ledger name the signed-in user.

Screenshots go to bench/out/ui/ (not committed) so a person can look at the screens; the
ones the guide shows (the form, the run, View History, a report's first page) are written to
docs/images/ as well (``screens.py``), so they are retaken whenever the UI changes.
In CI (``CI=true``) a missing browser or Playwright is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .harness import ADMIN, BIN, Proc, clean_env, fixable, free_port, start, verify_keys
from .screens import SHOTS, report_page, shot

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Less of Chromium's CPU on a busy test machine: no GPU process compositing frames.
    "--disable-gpu-compositing",
    "--disable-extensions",
    "--mute-audio",
]
SYNC = "selective-sync/sync-records"
ABSENT = 999_999_999
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _need_browser():
    """Playwright's sync API and Debian's Chromium, or a skip (a failure in CI)."""
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (scripts/bootstrap.sh)"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium; scripts/bootstrap.sh)"
    if problem:
        if in_ci:
            pytest.fail(f"browser test cannot run in CI: {problem}")
        pytest.skip(problem)
    return sync_playwright


@dataclass
class Tool:
    """A running ``selective-sync ui`` and the addresses it printed."""

    base: str
    reports: str
    proc: Proc
    data_dir: Path

    @property
    def api(self) -> str:
        return f"{self.base}/api"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=30)

    def deployment_id(self, full_name: str) -> str:
        with self.http() as client:
            response = client.get(f"/deployments/name/{full_name}")
            response.raise_for_status()
            return response.json()["id"]

    def runs_of(self, deployment_id: str) -> list[dict]:
        body = {
            "deployments": {"id": {"any_": [deployment_id]}},
            "sort": "EXPECTED_START_TIME_DESC",
        }
        with self.http() as client:
            response = client.post("/flow_runs/filter", json=body)
            response.raise_for_status()
            return response.json()

    def new_run(self, deployment_id: str, known: set[str], timeout: float = 60) -> dict:
        """The run the form just created (one not in ``known``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fresh = [r for r in self.runs_of(deployment_id) if r["id"] not in known]
            if fresh:
                return fresh[0]
            time.sleep(0.5)
        pytest.fail(f"the form created no run within {timeout}s\n{self.proc.tail()}")

    def wait(self, run_id: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        with self.http() as client:
            while True:
                run = client.get(f"/flow_runs/{run_id}").json()
                if (run.get("state") or {}).get("type") in TERMINAL:
                    return run
                if time.monotonic() > deadline:
                    pytest.fail(f"run {run_id} not finished after {timeout}s\n{self.proc.tail()}")
                time.sleep(0.5)

    def outcomes(self, run_id: str) -> dict[int, str]:
        body = {
            "artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": ["sync-outcomes-275"]}}
        }
        with self.http() as client:
            (table,) = client.post("/artifacts/filter", json=body).json()
        return {int(r["key"]): r["outcome"] for r in json.loads(table["data"])}


@pytest.fixture(scope="module")
def tool(demo_data, tmp_path_factory, seed_prefect_home) -> Iterator[Tool]:
    """``selective-sync ui`` on free ports, on a copy of the demo, until the module ends."""
    seed_prefect_home(demo_data.dir / "prefect")  # where `ui` keeps its Prefect home
    port, reports_port = free_port(), free_port()
    logdir = tmp_path_factory.mktemp("ui-logs")
    env = clean_env(**demo_data.env())
    # Without sign-in: the forms keep *Requested by* (the sign-in is tested by
    # TestSignIn below, on an instance of its own).
    args = [str(BIN / "selective-sync"), "ui", "--no-sign-in", "--port", str(port)]
    proc = start("ui", [*args, "--reports-port", str(reports_port)], env, logdir)
    deadline = time.monotonic() + 300
    while "Selective Sync is ready" not in proc.tail(40):
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            pytest.fail(f"selective-sync ui did not get ready:\n{proc.tail()}")
        time.sleep(0.5)
    base = f"http://127.0.0.1:{port}"
    printed = proc.tail(40)
    assert f"{base}/" in printed and f"export PREFECT_API_URL={base}/api" in printed, printed
    yield Tool(base, f"http://127.0.0.1:{reports_port}", proc, demo_data.dir)
    proc.stop(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    sync_playwright = _need_browser()
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, reduced_motion="reduce")
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


# ---------------------------------------------------------------- the history row


def open_history(page, base: str, district: int = 275) -> None:
    """The district's Sync History artifact in the V2 UI: its key page lists the versions
    (newest first); the newest is the history as it now stands."""
    page.goto(f"{base}/v2/artifacts/key/sync-history-{district}")
    newest = page.locator("a[href*='/artifacts/artifact/']").first
    newest.wait_for()
    shot(page, "v2-06-history-versions")
    newest.click()


def history_row(page, *, requester: str, run_name: str) -> dict[str, str]:
    """The Sync History row of one request, read from the artifact page shown in ``page``.

    Works on a table artifact with one row per request (columns such as Requested, User,
    Status, Object, Keys, Records and links: the row whose cells name the run or the
    requester, newest first) and on the markdown summary of one entry (a two-column
    table of field and value). Returns the row as {column: text}.
    """
    page.locator("table").first.wait_for()
    seen = []
    for table in page.locator("table").all():
        headers = [h.inner_text().strip() for h in table.locator("thead th").all()]
        rows = [
            [c.inner_text().strip() for c in tr.locator("td").all()]
            for tr in table.locator("tbody tr").all()
        ]
        seen.append((headers, rows[:3]))
        if "Records" in headers:
            for cells in rows:
                row = dict(zip(headers, cells, strict=False))
                text = " ".join(cells)
                if run_name in text or requester == row.get("User", row.get("Requested by")):
                    return row
        pairs = {cells[0]: cells[1] for cells in rows if len(cells) == 2}
        if "Records" in pairs and pairs.get("Requested by") == requester:
            return pairs
    pytest.fail(
        f"no Sync History row for {run_name!r} by {requester!r} on {page.url}; tables: {seen}"
    )


# ---------------------------------------------------------------- the forms


def field(page, title: str):
    """The controls of the form field labelled ``title`` (V1 or V2; "(Optional)" ignored).

    Found by the label a user reads, not by ids: neither UI ties every label to its control.
    """
    label = page.locator("label").filter(
        has_text=re.compile(rf"^\s*{re.escape(title)}(\s*\(Optional\))?\s*$")
    )
    return label.first.locator("xpath=ancestor::*[.//fieldset][1]").locator("fieldset").first


def fill(page, title: str, text: str) -> None:
    field(page, title).locator("textarea, input").first.fill(text)


def choose(page, title: str, option: str, ui: str) -> None:
    """Pick ``option`` in the dropdown titled ``title``."""
    button = field(page, title).locator("button").first
    if ui == "v2":
        button.click()
        page.get_by_role("option", name=option, exact=True).click()
    else:
        # V1's select opens from the keyboard (a click toggles it open and shut again); the
        # first key press can land before the page listens: try again until it opens.
        from playwright.sync_api import TimeoutError as NotOpenYet

        choice = page.locator(".p-select-option").filter(
            has_text=re.compile(rf"^\s*{re.escape(option)}\s*$")
        )
        for _ in range(5):
            button.focus()
            page.keyboard.press("ArrowDown")
            try:
                choice.first.wait_for(timeout=3000)
                break
            except NotOpenYet:
                page.keyboard.press("Escape")
        choice.first.click()
    # The button shows the choice once the page has re-rendered (not at once under load).
    from playwright.sync_api import expect

    expect(button).to_contain_text(option, timeout=10_000)


def switch_on(page, title: str) -> None:
    control = field(page, title).get_by_role("switch").first
    control.click()
    assert field(page, title).locator("input[type=checkbox]").first.is_checked() or (
        control.get_attribute("aria-checked") == "true"
    ), title


def form_text(page) -> str:
    return page.locator("form").first.inner_text()


def assert_plain_form(page) -> None:
    """Titled fields in the seed's order; no parameter names, type toggles or None."""
    labels = [
        re.sub(r"\s*\(Optional\)$", "", text.strip())
        for text in page.locator("form label").all_inner_texts()
    ]
    titles = ["Object", "IDs", "Requested by", "District", "Check dependencies", "Dry run"]
    assert [label for label in labels if label in titles] == titles, labels
    text = form_text(page)
    for python in ("requested_by", "check_dependencies", "dry_run", "Property is type", "None"):
        assert python not in text, (python, text[:1500])


def test_the_v2_form_runs_a_sync_and_its_history_row_shows_the_records(page, tool, demo_data):
    keys = fixable(demo_data.manifest, "PersonIdentity", ["mismatched"])[:2]
    assert verify_keys(tool.data_dir, "PersonIdentity", keys).errors == len(keys)
    deployment = tool.deployment_id(SYNC)
    known = {r["id"] for r in tool.runs_of(deployment)}

    page.goto(f"{tool.base}/")
    page.get_by_text("Deployments").first.wait_for()
    assert "/v2/" in page.url, page.url  # Prefect 3.9's default UI
    shot(page, "v2-01-dashboard")

    page.goto(f"{tool.base}/v2/deployments")
    page.get_by_text("clear-district-history").first.wait_for()
    shot(page, "v2-02-deployments")

    page.goto(f"{tool.base}/v2/deployments/deployment/{deployment}")
    page.get_by_text("sync-records").first.wait_for()
    shot(page, "v2-02-deployment-sync-records")

    page.goto(f"{tool.base}/v2/deployments/deployment/{deployment}/run")
    page.get_by_text("Dry run (Optional)").wait_for()
    assert_plain_form(page)
    shot(page, "v2-03-form")
    choose(page, "Object", "PersonIdentity", "v2")
    # Pasted text, one ID a line and a comma, as copied from a spreadsheet or Find IDs.
    fill(page, "IDs", f"{keys[0]}\n{keys[1]}, {ABSENT}")
    fill(page, "Requested by", ADMIN)
    shot(page, "v2-04-form-filled")
    page.get_by_role("button", name="Submit").click()

    run = tool.new_run(deployment, known)
    run = tool.wait(run["id"])
    assert run["state"]["type"] == "COMPLETED", (run["state"], tool.proc.tail())
    assert run["name"] == f"PersonIdentity x3 by {ADMIN}", run["name"]
    outcomes = tool.outcomes(run["id"])
    assert outcomes == {keys[0]: "synced", keys[1]: "synced", ABSENT: "not_found"}, outcomes
    assert verify_keys(tool.data_dir, "PersonIdentity", keys).errors == 0

    page.goto(f"{tool.base}/v2/runs/flow-run/{run['id']}")
    page.get_by_text(run["name"]).first.wait_for()
    shot(page, "v2-05-run")
    # The run's Artifacts tab: the request, every key's outcome, the report links.
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("sync-outcomes-275").first.wait_for()
    shot(page, "v2-05-run-artifacts")

    open_history(page, tool.base)
    row = history_row(page, requester=ADMIN, run_name=run["name"])
    shot(page, "v2-07-history")
    assert row["Records"] == "2/3", row

    # The row's PDF link: the report server makes the report on first open.
    link = page.locator("tr", has_text=run["name"]).get_by_role("link", name="PDF").first
    pdf = httpx.get(link.get_attribute("href"), timeout=120)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF"), pdf.text[:300]
    assert report_page(pdf.content).stat().st_size > 10_000


def test_the_v1_form_runs_a_dry_run(page, tool, demo_data):
    deployment = tool.deployment_id(SYNC)
    known = {r["id"] for r in tool.runs_of(deployment)}
    keys = fixable(demo_data.manifest, "Enrollment", ["mismatched"])[:1]
    before = verify_keys(tool.data_dir, "Enrollment", keys).errors

    # V1 pages are served at their old paths (the V2 UI lives under /v2/).
    page.goto(f"{tool.base}/deployments/deployment/{deployment}/run")
    page.get_by_text("Dry run (Optional)").wait_for()
    assert_plain_form(page)
    shot(page, "v1-01-form")
    choose(page, "Object", "Enrollment", "v1")
    fill(page, "IDs", ", ".join(map(str, keys)))
    fill(page, "Requested by", ADMIN)
    switch_on(page, "Dry run")
    shot(page, "v1-02-form-filled")
    page.get_by_role("button", name="Submit").click()

    run = tool.wait(tool.new_run(deployment, known)["id"])
    assert run["state"]["type"] == "COMPLETED", (run["state"], tool.proc.tail())
    assert run["parameters"]["dry_run"] is True, run["parameters"]
    assert run["name"] == f"Enrollment x1 by {ADMIN} (dry run)", run["name"]
    # A dry run writes nothing.
    assert verify_keys(tool.data_dir, "Enrollment", keys).errors == before
    page.goto(f"{tool.base}/runs/flow-run/{run['id']}")
    page.get_by_text(run["name"]).first.wait_for()
    shot(page, "v1-03-run")


FORMS = {
    "verification-summary/verify-district": ["District", "Objects", "Requested by"],
    "reconcile/reconcile-nightly": ["Districts", "Objects", "Most keys per object"],
    "delete-history-entry/delete-entry": ["Run", "Requested by"],
    "clear-sync-history/clear-district-history": ["Requested by", "District"],
    "find-ids/find-ids-by-filter": [
        "Requested by",
        "Object",
        "First name",
        "Last name",
        "Birth date",
        "State ID",
        "School",
        "Grade",
        "End year",
        "From the stored summary",
        "Show at most",
        "District",
    ],
}

# A dropdown whose choices a person reads: picked by its words in the real form.
CHOICES = {"find-ids/find-ids-by-filter": ("From the stored summary", "Missing at district")}


@pytest.mark.parametrize("full_name", sorted(FORMS))
def test_every_other_form_reads_in_plain_words_too(page, tool, full_name):
    deployment = tool.deployment_id(full_name)
    page.goto(f"{tool.base}/v2/deployments/deployment/{deployment}/run")
    last = FORMS[full_name][-1]
    page.locator("form label").filter(
        has_text=re.compile(rf"^\s*{re.escape(last)}(\s*\(Optional\))?\s*$")
    ).first.wait_for()
    labels = [
        re.sub(r"\s*\(Optional\)$", "", text.strip())
        for text in page.locator("form label").all_inner_texts()
    ]
    assert [label for label in labels if label in FORMS[full_name]] == FORMS[full_name], labels
    assert not [label for label in labels if "_" in label], labels
    text = form_text(page)
    assert "Property is type" not in text, text[:1500]
    # A union renders as tabs named for its types above the field: none here.
    types = {"null", "None", "string", "str", "integer", "int", "array", "list", "boolean"}
    assert not types & {line.strip() for line in text.splitlines()}, text[:1500]
    assert page.locator("form fieldset [role=tablist]").count() == 0
    if full_name in CHOICES:
        choose(page, *CHOICES[full_name], ui="v2")
    shot(page, f"v2-form-{full_name.replace('/', '-')}")


def test_ctrl_c_stops_the_server_the_deployments_and_the_reports_within_seconds(tool):
    """Last of the tests of ``tool``: Ctrl-C (SIGINT to ``selective-sync ui``) stops all
    three."""
    import signal

    assert httpx.get(f"{tool.api}/health", timeout=5).status_code == 200
    started = time.monotonic()
    tool.proc.popen.send_signal(signal.SIGINT)
    tool.proc.popen.wait(timeout=30)
    took = time.monotonic() - started
    assert took < 15, took
    for url in (f"{tool.api}/health", tool.reports):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)
    assert "stopping" in tool.proc.tail(5), tool.proc.tail()


# ---------------------------------------------------------------- sign-in through nginx


@dataclass
class SignedIn:
    """A ``selective-sync ui`` with nginx's sign-in, the passwords and addresses it printed."""

    base: str
    reports: str
    internal_api: str
    token: str
    passwords: dict[str, str]
    proc: Proc
    data_dir: Path

    def http(self) -> httpx.Client:
        """The API as the served deployments reach it (the service token, no nginx)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.internal_api, headers=headers, timeout=30)

    def deployment_id(self, full_name: str) -> str:
        with self.http() as client:
            response = client.get(f"/deployments/name/{full_name}")
            response.raise_for_status()
            return response.json()["id"]

    def new_run(self, deployment_id: str, known: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        body = {"deployments": {"id": {"any_": [deployment_id]}}}
        with self.http() as client:
            while time.monotonic() < deadline:
                runs = client.post("/flow_runs/filter", json=body).raise_for_status().json()
                fresh = [r for r in runs if r["id"] not in known]
                if fresh:
                    return fresh[0]
                time.sleep(0.5)
        pytest.fail(f"the form created no run within {timeout}s\n{self.proc.tail()}")

    def known(self, deployment_id: str) -> set[str]:
        body = {"deployments": {"id": {"any_": [deployment_id]}}}
        with self.http() as client:
            return {r["id"] for r in client.post("/flow_runs/filter", json=body).json()}

    def wait(self, run_id: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        with self.http() as client:
            while True:
                run = client.get(f"/flow_runs/{run_id}").json()
                if (run.get("state") or {}).get("type") in TERMINAL:
                    return run
                if time.monotonic() > deadline:
                    pytest.fail(f"run {run_id} not finished after {timeout}s\n{self.proc.tail()}")
                time.sleep(0.5)


def report_link(signed_in: SignedIn, run_id: str, fmt: str) -> str:
    """The URL of a run's report (a link artifact's data is ``[text](url)``)."""
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "type": {"any_": ["markdown"]}}}
    with signed_in.http() as client:
        for artifact in client.post("/artifacts/filter", json=body).json():
            if (artifact.get("key") or "").startswith(f"sync-report-{fmt}"):
                return artifact["data"].rsplit("(", 1)[1].rstrip(")")
    pytest.fail(f"run {run_id} has no {fmt} report link")


def _need_nginx() -> None:
    from selective_sync.identity.nginx import NGINX

    if Path(NGINX).exists():
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{NGINX} is missing in CI (scripts/bootstrap.sh installs it)")
    pytest.skip(f"{NGINX} is missing (apt-get install nginx; scripts/bootstrap.sh)")


class TestSignIn:
    """``selective-sync ui`` as it starts by default: nginx asks who you are."""

    @pytest.fixture(scope="class")
    def signed_in(self, demo_template, tmp_path_factory, seed_prefect_home) -> Iterator[SignedIn]:
        _need_nginx()
        directory = tmp_path_factory.mktemp("signed-in") / "data"
        shutil.copytree(demo_template, directory)
        seed_prefect_home(directory / "prefect")
        port, reports_port = free_port(), free_port()
        logdir = tmp_path_factory.mktemp("ui-sign-in-logs")
        env = clean_env(SELECTIVE_SYNC_DATA_DIR=str(directory))
        args = [str(BIN / "selective-sync"), "ui", "--port", str(port)]
        proc = start("ui", [*args, "--reports-port", str(reports_port)], env, logdir)
        deadline = time.monotonic() + 300
        while "Selective Sync is ready" not in proc.tail(40):
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                pytest.fail(f"selective-sync ui did not get ready:\n{proc.tail()}")
            time.sleep(0.5)
        printed = proc.tail(40)
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/" in printed, printed
        passwords = dict(re.findall(r"^\s+(state-admin|district275) / (\S+)", printed, re.M))
        assert set(passwords) == {"state-admin", "district275"}, printed
        internal = re.search(r"export PREFECT_API_URL=(\S+)", printed).group(1)
        assert internal != f"{base}/api", printed  # the CLI reaches the server directly
        token = (directory / "sign-in" / "service-token").read_text().strip()
        yield SignedIn(
            base, f"http://127.0.0.1:{reports_port}", internal, token, passwords, proc, directory
        )
        proc.stop(timeout=30)

    def _page(self, browser, signed_in: SignedIn, user: str):
        context = browser.new_context(
            viewport={"width": 1400, "height": 1000},
            reduced_motion="reduce",
            http_credentials={"username": user, "password": signed_in.passwords[user]},
        )
        context.set_default_timeout(60_000)
        return context, context.new_page()

    def test_nothing_answers_without_signing_in(self, signed_in):
        for url in (f"{signed_in.base}/", f"{signed_in.base}/api/flows/", signed_in.reports):
            response = httpx.get(url, timeout=10)
            assert response.status_code == 401, (url, response.status_code)
        wrong = ("district275", "not-the-password")
        assert httpx.get(f"{signed_in.base}/", auth=wrong, timeout=10).status_code == 401
        # Past nginx, the servers answer its secret or the service token only.
        assert httpx.post(f"{signed_in.internal_api}/flows/filter", json={}).status_code == 401

    def test_the_district_user_syncs_275_and_the_run_and_ledger_name_them(
        self, browser, signed_in, demo_data
    ):
        from selective_sync.db import make_engine
        from selective_sync.ledger import read_request
        from selective_sync.settings import sqlite_url

        user = "district275"
        keys = fixable(demo_data.manifest, "PersonIdentity", ["mismatched"])[:2]
        assert verify_keys(signed_in.data_dir, "PersonIdentity", keys).errors == len(keys)
        deployment = signed_in.deployment_id(SYNC)
        known = signed_in.known(deployment)
        context, page = self._page(browser, signed_in, user)
        try:
            page.goto(f"{signed_in.base}/v2/deployments/deployment/{deployment}/run")
            page.get_by_text("Dry run (Optional)").wait_for()
            labels = page.locator("form label").all_inner_texts()
            # Who acts is the signed-in user: the form does not ask.
            assert not [label for label in labels if "Requested by" in label], labels
            shot(page, "signin-01-form-district-user")
            choose(page, "Object", "PersonIdentity", "v2")
            fill(page, "IDs", f"{keys[0]}, {keys[1]}")
            page.get_by_role("button", name="Submit").click()
            run = signed_in.wait(signed_in.new_run(deployment, known)["id"])
            assert run["state"]["type"] == "COMPLETED", (run["state"], signed_in.proc.tail())
            assert f"acting-user:{user}" in run["tags"], run["tags"]
            assert run["name"] == f"PersonIdentity x2 by {user}", run["name"]
            assert "requested_by" not in run["parameters"], run["parameters"]
            assert verify_keys(signed_in.data_dir, "PersonIdentity", keys).errors == 0
            state = make_engine(sqlite_url(signed_in.data_dir / "state.db"))
            try:
                assert read_request(state, run["id"]).requested_by == user
            finally:
                state.dispose()
            page.goto(f"{signed_in.base}/v2/runs/flow-run/{run['id']}")
            page.get_by_text(run["name"]).first.wait_for()
            shot(page, "signin-02-run-district-user")

            # The run's PDF report, through the sign-in (the link's address is nginx's).
            pdf = report_link(signed_in, run["id"], "pdf")
            assert pdf.startswith(signed_in.reports), pdf
            assert httpx.get(pdf, timeout=30).status_code == 401
            password = signed_in.passwords[user]
            report = httpx.get(pdf, auth=(user, password), timeout=120)
            assert report.status_code == 200, report.text
            assert report.content.startswith(b"%PDF")

            # District 312: this installation serves 275 only (one per district), so the
            # district user's run is refused, saying why.
            known = signed_in.known(deployment)
            page.goto(f"{signed_in.base}/v2/deployments/deployment/{deployment}/run")
            page.get_by_text("Dry run (Optional)").wait_for()
            choose(page, "Object", "PersonIdentity", "v2")
            fill(page, "IDs", str(keys[0]))
            fill(page, "District", "312")
            page.get_by_role("button", name="Submit").click()
            refused = signed_in.wait(signed_in.new_run(deployment, known)["id"])
            assert refused["state"]["type"] == "FAILED", refused["state"]
            message = refused["state"]["message"] or ""
            assert "district 312 is not configured here" in message, message
            assert f"acting-user:{user}" in refused["tags"]
            page.goto(f"{signed_in.base}/v2/runs/flow-run/{refused['id']}")
            page.get_by_text("312").first.wait_for()
            shot(page, "signin-03-refused-312")
        finally:
            context.close()

    def test_the_district_user_is_refused_clearing_the_history_naming_the_right(
        self, browser, signed_in
    ):
        user = "district275"
        deployment = signed_in.deployment_id("clear-sync-history/clear-district-history")
        known = signed_in.known(deployment)
        context, page = self._page(browser, signed_in, user)
        try:
            page.goto(f"{signed_in.base}/v2/deployments/deployment/{deployment}/run")
            page.locator("form label").filter(has_text=re.compile(r"^\s*District")).first.wait_for()
            labels = page.locator("form label").all_inner_texts()
            assert not [label for label in labels if "Requested by" in label], labels
            page.get_by_role("button", name="Submit").click()
            run = signed_in.wait(signed_in.new_run(deployment, known)["id"])
            message = run["state"]["message"] or ""
            assert run["state"]["type"] == "FAILED", run["state"]
            assert f"user '{user}' lacks the D right" in message and "275" in message, message
            assert run["name"] == f"Clear Sync History 275 by {user}", run["name"]
            page.goto(f"{signed_in.base}/v2/runs/flow-run/{run['id']}")
            page.get_by_text("lacks the D right").first.wait_for()
            shot(page, "signin-04-refused-clear")
        finally:
            context.close()

    def test_the_state_administrator_signs_in_and_sees_the_deployments(self, browser, signed_in):
        context, page = self._page(browser, signed_in, "state-admin")
        try:
            page.goto(f"{signed_in.base}/v2/deployments")
            page.get_by_text("clear-district-history").first.wait_for()
            shot(page, "signin-05-state-admin")
        finally:
            context.close()
