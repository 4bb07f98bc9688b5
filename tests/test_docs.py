"""The guide builds in strict mode, its reference pages hold every setting, command and
deployment of the code, and the README stays short with the test command CI runs."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def sphinx(source: Path, out: Path) -> subprocess.CompletedProcess:
    """The build command of the README: warnings are errors, nitpicky, every page read."""
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-E"]
    return subprocess.run(
        [*command, "-b", "html", str(source), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SELECTIVE_SYNC_DOCS_REPO": str(REPO)},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    done = sphinx(DOCS, out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's text, tags removed and white space collapsed."""
    markup = (site / page).read_text(encoding="utf-8")
    markup = re.sub(r"<(script|style)\b.*?</\1>", " ", markup, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def test_the_guide_builds_strictly_with_every_page(site):
    for page in (
        "index.html",
        "getting-started.html",
        "using/sync-form.html",
        "using/outcomes.html",
        "operating/index.html",
        "reference/configuration.html",
        "reference/cli.html",
        "reference/registry.html",
        "reference/deployments.html",
        "how-it-works/index.html",
        "how-it-works/normalisation.html",
        "performance.html",
        "reliability.html",
        "changelog.html",
    ):
        assert (site / page).is_file(), page
    for image in ("sync-form.png", "sync-run.png", "sync-history.png", "sync-report.png"):
        assert (site / "_images" / image).is_file(), image


def test_a_broken_link_fails_the_build(tmp_path):
    """Strict mode really is strict: a link to a page that does not exist fails it."""
    source = tmp_path / "docs"
    shutil.copytree(DOCS, source, ignore=shutil.ignore_patterns("_generated"))
    with (source / "index.md").open("a", encoding="utf-8") as index:
        index.write("\nSee [a page that is not there](nowhere.md).\n")
    done = sphinx(source, tmp_path / "out")
    assert done.returncode != 0
    assert "nowhere" in done.stdout + done.stderr


def test_every_setting_is_on_the_configuration_page(site):
    from selective_sync.settings import ENV_PREFIX, Settings

    text = page_text(site, "reference/configuration.html")
    names = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    assert len(names) > 20
    missing = [name for name in names if name not in text]
    assert not missing, missing
    for name, field in Settings.model_fields.items():
        assert field.description, f"{ENV_PREFIX}{name.upper()} has no description"
        assert " ".join(field.description.split()) in text, name


def commands():
    """Every command of the Typer app, with its options, walked through click."""
    import typer

    from selective_sync.cli import app, register

    register()
    found: dict[str, list[str]] = {}

    def walk(command, path, parent):
        ctx = type(parent)(command, info_name=path[-1], parent=parent) if parent else None
        if len(path) > 1:
            found[" ".join(path)] = [
                param.opts[0]
                for param in command.params
                if param.param_type_name == "option" and not getattr(param, "hidden", False)
            ]
        if hasattr(command, "list_commands"):
            ctx = ctx or _context(command, path[-1])
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name], ctx)

    walk(typer.main.get_command(app), ["selective-sync"], None)
    return found


def _context(command, name):
    try:
        from typer._click import Context
    except ImportError:  # older Typer: the click package
        from click import Context
    return Context(command, info_name=name)


def test_every_command_and_option_is_on_the_cli_page(site):
    text = page_text(site, "reference/cli.html")
    found = commands()
    assert {"selective-sync sync", "selective-sync rights refusals", "selective-sync ui"} <= set(
        found
    )
    missing = [name for name in found if f"{name} [OPTIONS]" not in text]
    assert not missing, missing
    section = re.compile(r"selective-sync [a-z -]+ # ")
    for name, options in found.items():
        start = text.index(f"{name} # ")
        rest = text[start + len(name) + 3 :]
        following = section.search(rest)
        body = rest[: following.start()] if following else rest
        for option in options:
            assert option in body, (name, option)


def test_every_deployment_is_on_the_deployments_page(site):
    config = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    text = page_text(site, "reference/deployments.html")
    for deployment in config["deployments"]:
        assert f"/{deployment['name']}" in text, deployment["name"]
        assert deployment["entrypoint"] in text, deployment["entrypoint"]
    assert "reconcile-districts/reconcile-some-districts" in text


def test_the_normalisation_page_holds_the_table_the_tests_hold(site):
    from selective_sync.normalisation_cases import CASES

    text = page_text(site, "how-it-works/normalisation.html")
    assert "space, TAB, CR and LF" in text
    rows = re.findall(r"(?:trim|exact|date|int) (?:NULL|'[^']*'|\d+)", text)
    assert len(rows) >= len(CASES)


def test_the_readme_is_short_and_holds_the_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci == "./scripts/bootstrap.sh && .venv/bin/pytest -q -n 4 --dist loadfile"
    assert f"```bash\n{ci}\n```" in readme
    assert "```bash\n./scripts/demo.sh\n```" in readme
    assert "docs/images/sync-history.png" in readme
    for link in re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]+)", readme):
        assert (REPO / link).is_file(), link
