"""The guide's reference pages, generated from the code at every build.

Before Sphinx reads the pages, this extension writes markdown fragments into
``docs/_generated/`` (not committed) and the pages include them:

- ``settings.md``: every ``SELECTIVE_SYNC_*`` setting of ``selective_sync.settings.Settings``
  (name, type, default, description) and the fields of a districts file;
- ``cli.md``: every command of the Typer app ``selective_sync.cli.app``, with its usage,
  arguments and options;
- ``registry.md``: the objects of ``selective_sync.registry``;
- ``deployments.md``: the deployments of ``prefect.yaml``, with their flows' form fields
  (read from the flow modules' source, so Prefect is not imported);
- ``normalisation.md``: the cases of ``selective_sync.normalisation_cases``.

A setting, command, option or argument without a description is a warning, so a strict
build (``-W``) fails on it.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import yaml
from sphinx.util import logging

logger = logging.getLogger(__name__)

REPO = Path(os.environ.get("SELECTIVE_SYNC_DOCS_REPO") or Path(__file__).resolve().parents[2])
"""The checkout the pages describe (a copy of docs/ elsewhere names it in this variable)."""
OUT = REPO / "docs" / "_generated"


# ---------------------------------------------------------------- helpers


def cell(text: object) -> str:
    """Text fit for one markdown table cell (no pipes or line breaks)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: object) -> str:
    """Inline code that may itself hold backticks."""
    text = str(text)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def shown(value: object) -> str:
    """A value as the guide shows it: ``repr`` with the home folder written ``~``."""
    text = repr(value) if not isinstance(value, Path) else str(value)
    return text.replace(str(Path.home()), "~")


def write(name: str, text: str) -> None:
    """Write a fragment, replacing it only when its text changed (keeps builds incremental)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / name
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------- configuration


def settings_page() -> str:
    from pydantic_core import PydanticUndefined

    from selective_sync.settings import ENV_PREFIX, DistrictConfig, Settings

    lines: list[str] = []
    for name, field in Settings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        if field.default_factory is not None:
            default = field.default_factory()
        elif field.default is PydanticUndefined:
            default = "(required)"
        else:
            default = field.default
        if not field.description:
            logger.warning("setting %s has no description (Field(description=...))", env)
        lines += [
            f"{code(env)}",
            f": {' '.join((field.description or '').split())}",
            "",
            f"  default: {_env_value(default)}; type: {code(_type_text(field.annotation))}",
            "",
        ]
    lines += [
        "",
        "(districts-file-fields)=",
        "## The fields of a district",
        "",
        "Each entry of `SELECTIVE_SYNC_DISTRICTS` or of a districts file:",
        "",
        "| field | type | default | meaning |",
        "|---|---|---|---|",
    ]
    doc = {
        "number": "the district's number, greater than 0",
        "name": "the district's name",
        "url": "SQLAlchemy URL of its database; `${NAME}` is replaced by the variable NAME",
        "enabled": "false: registered at the state but neither reconciled nor selectable",
    }
    for name, field in DistrictConfig.model_fields.items():
        default = "(required)" if field.is_required() else code(shown(field.default))
        kind = cell(_type_text(field.annotation))
        if name not in doc:
            logger.warning("district field %s is not described in docs/_ext/generated.py", name)
        lines.append(f"| `{name}` | {kind} | {default} | {cell(doc.get(name, ''))} |")
    return "\n".join(lines) + "\n"


def _env_value(value: object) -> str:
    """A default as it would be written in the environment."""
    import json

    if value is None:
        return "none"
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, str | Path):
        return code(shown(Path(value)) if isinstance(value, Path) else value)
    if isinstance(value, list | dict):
        return code(json.dumps(value))
    return code(value)


def _type_text(annotation: object) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    for noise in ("typing.", "pathlib.", "pydantic.types.", "selective_sync.settings."):
        text = text.replace(noise, "")
    return text.replace("NoneType", "None")


# ---------------------------------------------------------------- command line


def cli_page() -> tuple[str, list[str]]:
    """The CLI reference, and every command's full name (for the tests)."""
    import typer

    from selective_sync.cli import app, register

    click = _click()

    register()
    root = typer.main.get_command(app)
    lines: list[str] = []
    names: list[str] = []

    def walk(command, path: list[str], parent) -> None:
        ctx = click.Context(command, info_name=path[-1], parent=parent)
        full = " ".join(path)
        if len(path) > 1:
            names.append(full)
            anchor = "cli-" + "-".join(path[1:])
            depth = "#" * min(len(path), 4)
            lines.extend([f"({anchor})=", f"{depth} `{full}`", ""])
            help_text = (command.help or command.short_help or "").strip()
            if not help_text:
                logger.warning("command %r has no help", full)
            lines.extend([_plain(help_text), ""])
            usage = " ".join(command.collect_usage_pieces(ctx)).replace("{", "").replace("}", "")
            lines.extend(["```text", f"{full} {usage}".rstrip(), "```", ""])
            rows = [_param_row(full, p) for p in command.params if not _hidden(p)]
            if rows:
                lines.extend(["| argument or option | meaning | default |", "|---|---|---|"])
                lines.extend(rows)
                lines.append("")
        if hasattr(command, "list_commands"):
            for name in sorted(command.list_commands(ctx)):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, [*path, name], ctx)

    walk(root, ["selective-sync"], None)
    return "\n".join(lines) + "\n", names


def _click():
    """The click Typer builds on (Typer 0.29 carries its own copy as ``typer._click``)."""
    try:
        from typer import _click as click
    except ImportError:  # older Typer: the click package
        import click
    return click


def _metavar(param) -> str:
    """What an option takes, from its annotation (Typer's own display needs a terminal)."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if getattr(annotation, "__origin__", None) is list:
        return _metavar_of(annotation.__args__[0]) + " (repeatable)"
    return _metavar_of(annotation)


def _metavar_of(annotation) -> str:
    names = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH", bool: "BOOLEAN"}
    return names.get(annotation, getattr(annotation, "__name__", "VALUE").upper())


def _hidden(param) -> bool:
    return getattr(param, "hidden", False) or param.name in ("help",)


def _plain(text: str) -> str:
    """Help text as markdown: Typer's paragraphs kept, its rich markup left out."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return "\n\n".join(paragraphs).replace("\b", "")


def _param_row(command: str, param) -> str:
    if param.param_type_name == "argument":
        name = (param.metavar or param.name).upper()
        if param.nargs == -1:
            name += "..."
        label = code(name)
    else:
        names = [*param.opts, *param.secondary_opts]
        label = " / ".join(code(n) for n in names)
        if not param.is_flag and param.metavar:
            label += f" {code(param.metavar)}"
        elif not param.is_flag and not param.count:
            label += f" {code(_metavar(param))}"
    help_text = getattr(param, "help", None) or ""
    if not help_text:
        logger.warning("%s: %s has no help", command, param.name)
    default = getattr(param, "default", None)
    if getattr(param, "required", False):
        default_text = "required"
    elif default in (None, (), []) or (param.is_flag if hasattr(param, "is_flag") else False):
        default_text = "" if not getattr(param, "is_flag", False) else ("on" if default else "off")
    else:
        value = getattr(default, "value", default)
        default_text = code(value if not isinstance(value, tuple) else ", ".join(map(str, value)))
    return f"| {label} | {cell(_plain(help_text))} | {default_text} |"


# ---------------------------------------------------------------- registry


def registry_page() -> str:
    from selective_sync.registry import NORMALISED_AWAY, REGISTRY

    lines: list[str] = []
    for spec in REGISTRY.values():
        lines += [f"({'registry-' + spec.name.lower()})=", f"## {spec.name}", ""]
        facts = [
            f"- **key**: {code(spec.key_label)} (column {code(spec.root + '.' + spec.key_column)})",
            "- **parent**: "
            + (
                f"{spec.parent.object} (through {code(spec.root + '.' + spec.parent.column)}):"
                " with *Check dependencies* a missing or different parent is synced first"
                if spec.parent
                else "none"
            ),
        ]
        for part in spec.parts:
            what = "root row" if part.table == spec.root else f"child part *{part.label}*"
            facts.append(
                f"- **carries** {code(part.table)}: {what}, every row whose "
                f"{code(part.link)} is the key (id column {code(part.id_column)})"
            )
        for join in spec.joins:
            facts.append(
                f"- **joins** {code(join.table)} by {code(spec.root + '.' + join.root_column)}"
                f" = {code(join.table + '.' + join.id_column)} to build the compared row"
            )
        lines += [*facts, "", "| compared column | table | normalisation |", "|---|---|---|"]
        for compared in spec.compared:
            lines.append(
                f"| {code(compared.column)} | {code(compared.table)} | {code(compared.normalise)} |"
            )
        lines.append("")
    lines += [
        "## What each normalisation hides",
        "",
        "A sync names a key that differed only in this as, for example, "
        '"changed 1 row (1 update): white space only".',
        "",
        "| normalisation | a sync's reason names it |",
        "|---|---|",
    ]
    lines += [f"| `{how}` | {hidden} only |" for how, hidden in NORMALISED_AWAY.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- deployments


def deployments_page() -> tuple[str, list[str]]:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    lines: list[str] = []
    names: list[str] = []
    for deployment in config["deployments"]:
        module, function = deployment["entrypoint"].split(":")
        flow_name, params = _flow_source(module, function)
        full = f"{flow_name}/{deployment['name']}"
        names.append(full)
        anchor = "deployment-" + deployment["name"]
        lines += [f"({anchor})=", f"## `{full}`", ""]
        lines += [" ".join(deployment.get("description", "").split()), ""]
        facts = [f"- **entrypoint**: {code(deployment['entrypoint'])}"]
        pool = deployment.get("work_pool") or {}
        if pool:
            facts.append(f"- **work pool**: {code(pool.get('name'))}")
        for schedule in deployment.get("schedules") or []:
            facts.append(
                f"- **schedule**: {code(schedule['cron'])} ({schedule.get('timezone', 'UTC')})"
            )
        if deployment.get("concurrency_limit") is not None:
            facts.append(f"- **concurrency limit**: {deployment['concurrency_limit']}")
        for key, value in (deployment.get("parameters") or {}).items():
            facts.append(f"- **parameter set by the deployment**: {code(f'{key}={value}')}")
        lines += [*facts, ""]
        if params:
            lines += ["| form field | parameter | default |", "|---|---|---|"]
            for title, name, default in params:
                lines.append(f"| {cell(title)} | {code(name)} | {default} |")
            lines.append("")
    return "\n".join(lines) + "\n", names


def _flow_source(module: str, function: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The flow's name and its parameters (title, name, default) from the module's source."""
    path = REPO / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            break
    else:
        raise RuntimeError(f"{module}:{function} not found in {path}")
    flow_name = function
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    flow_name = keyword.value.value
    args = node.args.args
    defaults = [None] * (len(args) - len(node.args.defaults)) + list(node.args.defaults)
    params = []
    for arg, default in zip(args, defaults, strict=True):
        title = arg.arg
        for sub in ast.walk(arg.annotation) if arg.annotation else ():
            if isinstance(sub, ast.Call) and getattr(sub.func, "id", "") == "title":
                title = sub.args[0].value
        params.append((title, arg.arg, _default_text(default, tree)))
    return flow_name, params


def _default_text(default: ast.expr | None, tree: ast.Module) -> str:
    """A parameter's default as the form shows it (module constants looked up)."""
    if default is None:
        return "required"
    if isinstance(default, ast.Name):
        for node in tree.body:
            if (
                isinstance(node, ast.Assign | ast.AnnAssign)
                and isinstance(node.value, ast.Constant)
                and default.id in [t.id for t in _targets(node) if isinstance(t, ast.Name)]
            ):
                return code(repr(node.value.value))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "selective_sync"
            ):
                names = {alias.asname or alias.name: alias.name for alias in node.names}
                if default.id in names:  # a core constant: the core imports without Prefect
                    import importlib

                    value = getattr(importlib.import_module(node.module), names[default.id])
                    return code(repr(value))
        return code(default.id)
    if isinstance(default, ast.Attribute):  # an enum member, e.g. FindObject.PersonIdentity
        return code(default.attr)
    value = ast.literal_eval(default)
    if value in ((), [], ""):
        return "empty"
    if isinstance(value, bool):
        return "on" if value else "off"
    return code(repr(value))


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    return node.targets if isinstance(node, ast.Assign) else [node.target]


# ---------------------------------------------------------------- normalisation


def normalisation_page() -> str:
    from selective_sync.normalisation_cases import CASES

    lines = [
        "| normalisation | district value | state value | verification: equal "
        "| a sync writes | note |",
        "|---|---|---|---|---|---|",
    ]
    for case in CASES:
        if isinstance(case.writes, bool):
            writes = "yes" if case.writes else "no"
        else:
            writes = "on " + ", ".join(sorted(case.writes)) + " (dates kept as text)"
        lines.append(
            f"| `{case.how}` | {_value(case.district)} | {_value(case.state)} | "
            f"{'yes' if case.equal else 'no'} | {writes} | {cell(case.note)} |"
        )
    return "\n".join(lines) + "\n"


def _value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str) and not value.isascii():
        import unicodedata

        form = "NFC" if unicodedata.is_normalized("NFC", value) else "NFD"
        return code(repr(unicodedata.normalize("NFC", value))) + f" ({form})"
    return code(repr(value))


# ---------------------------------------------------------------- packages


LAYERS = (
    ("flows", "Prefect flows (the deployments' entrypoints) and the Prefect side of the stores"),
    ("tasks", "thin Prefect tasks: each opens its engines, calls one core function"),
    ("selective_sync", "the plain-Python core: never imports Prefect, flows or tasks"),
)


def packages_page() -> str:
    """Each layer's modules and packages with the first sentence of their docstrings."""
    lines: list[str] = []
    for layer, what in LAYERS:
        lines += [f"### `{layer}/`: {what}", "", "| module | what it is |", "|---|---|"]
        root = REPO / layer
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(REPO)
            if "migrations" in relative.parts[:-1] and relative.parent.name != "migrations":
                continue  # the migration scripts themselves
            if "migrations" in relative.parts[:-1] and path.name != "__init__.py":
                continue
            if path.name == "__init__.py" and path.parent == root:
                continue
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            name = str(relative.parent) + "/" if path.name == "__init__.py" else str(relative)
            lines.append(f"| `{name}` | {cell(_first_sentence(doc))} |")
        lines.append("")
    return "\n".join(lines)


def _first_sentence(doc: str) -> str:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    if ". " in paragraph:
        paragraph = paragraph[: paragraph.index(". ") + 1]
    return paragraph


# ---------------------------------------------------------------- Sphinx


GENERATED: dict[str, list[str]] = {}
"""Filled at each build: the CLI commands and the deployments generated (for the tests)."""


def generate(app=None) -> dict[str, list[str]]:
    """Write every fragment; returns the names the pages hold (commands, deployments)."""
    global OUT
    if app is not None:
        OUT = Path(app.srcdir) / "_generated"
    cli_text, commands = cli_page()
    deployments_text, deployments = deployments_page()
    write("settings.md", settings_page())
    write("cli.md", cli_text)
    write("registry.md", registry_page())
    write("deployments.md", deployments_text)
    write("normalisation.md", normalisation_page())
    write("packages.md", packages_page())
    GENERATED.update(commands=commands, deployments=deployments)
    return GENERATED


def setup(app):
    import sys

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
