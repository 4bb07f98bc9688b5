"""All configuration, read from the environment (prefix ``SELECTIVE_SYNC_``), and which
districts this installation serves (``configured_districts``, ``resolve_district``).

Districts come from three places: the single-district settings (``DISTRICT_NUMBER``,
``_NAME``, ``_URL``), the JSON variable ``SELECTIVE_SYNC_DISTRICTS`` and, for a state with
many districts, a YAML or TOML file named by ``SELECTIVE_SYNC_DISTRICTS_FILE`` (see
:func:`load_districts_file`).
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import DistrictNotConfigured, DistrictsFileError

ENV_PREFIX = "SELECTIVE_SYNC_"
DEFAULT_DATA_DIR = Path.home() / ".selective-sync"
DEMO_DISTRICT_NUMBER = 275
DEMO_DISTRICT_NAME = "MAPLE VALLEY"


class DistrictConfig(BaseModel):
    """One district this installation serves: its number, name and database URL."""

    number: int = Field(gt=0)
    name: str = Field(min_length=1)
    url: str
    enabled: bool = True


class Settings(BaseSettings):
    """Every setting of the tool; with nothing set, the embedded demo databases are used."""

    model_config = SettingsConfigDict(env_prefix="SELECTIVE_SYNC_", extra="ignore")

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Folder holding the demo SQLite databases, manifest and reports.",
    )
    district_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the district database (default: demo)."
    )
    state_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the state database (default: demo)."
    )
    district_number: int = Field(
        default=DEMO_DISTRICT_NUMBER,
        gt=0,
        description="Number of the district served by default (when a command names none).",
    )
    district_name: str = Field(
        default=DEMO_DISTRICT_NAME,
        min_length=1,
        description="Name of that district (used with SELECTIVE_SYNC_DISTRICT_URL).",
    )
    districts: list[DistrictConfig] = Field(
        default_factory=list,
        description='More districts, as JSON: [{"number": 276, "name": "...", "url": ...}].',
    )
    districts_file: Path | None = Field(
        default=None,
        description="YAML or TOML file listing the districts (number, name, url, enabled).",
    )
    district_lock_timeout_s: float = Field(
        default=900.0,
        ge=0,
        description=(
            "How long a sync or a district's reconciliation waits for another one of the "
            "same district to finish before it gives up."
        ),
    )
    reconcile_batch_deployment: str = Field(
        default="reconcile-districts/reconcile-some-districts",
        description=(
            "The deployment the nightly runs on the work pool, each run reconciling a batch "
            "of districts one after another."
        ),
    )
    reconcile_districts_per_run: int = Field(
        default=0,
        ge=0,
        description=(
            "Districts in one of the nightly's runs on the work pool; 0: about a third of "
            "each worker's share of the night (a run's process start is paid once per "
            "batch, and the workers still share the night evenly)."
        ),
    )
    reconcile_start_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "How long the nightly waits for a worker to start one of its runs; a run not "
            "started by then is cancelled and its districts reported in error."
        ),
    )
    reconcile_district_timeout_s: float = Field(
        default=4 * 3600.0,
        gt=0,
        description=(
            "How long one district may take on the work pool (a run of several districts "
            "gets this much per district) before the nightly cancels the run and reports "
            "its unfinished districts in error."
        ),
    )
    sqlite_busy_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a SQLite writer waits for a lock."
    )
    verify_chunk_rows: int = Field(
        default=20_000, gt=0, description="Rows fetched per round trip while verifying."
    )
    task_runner: Literal["thread", "dask"] = Field(
        default="thread",
        description="Where a sync's per-key tasks run: thread (in the flow's process) or dask.",
    )
    max_workers: int = Field(default=8, gt=0, description="Bound on concurrent sync tasks.")
    ledger_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        description=(
            "How often a running request tells the ledger it is alive; one not heard from "
            "for three intervals is shown as Crashed."
        ),
    )
    dask_address: str | None = Field(
        default=None,
        description=(
            "Address of the Dask scheduler (tcp://host:8786) for task_runner dask; none: "
            "a local Dask cluster of MAX_WORKERS workers."
        ),
    )
    per_key_task_limit: int = Field(
        default=200,
        gt=0,
        description="Up to this many keys get one task run each; above it keys are batched.",
    )
    retry_attempts: int = Field(
        default=4,
        ge=1,
        description=(
            "Attempts a key (or a read) gets for transient database faults, the first "
            "included; see selective_sync/sync/retry.py."
        ),
    )
    retry_backoff_s: float = Field(
        default=0.5,
        ge=0,
        description="Pause after the first failed attempt, doubled after each next one.",
    )
    rights_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the rights store "
            "(default: the state database, or DATA_DIR/rights.db for the demo)."
        ),
    )
    report_dir: Path | None = Field(
        default=None, description="Where reports are stored (default: DATA_DIR/reports)."
    )
    reports_base_url: str = Field(
        default="http://127.0.0.1:8765",
        description=(
            "Base URL of the report server (selective-sync reports serve) as a browser "
            "reaches it; the report links in run artifacts start with it."
        ),
    )
    reports_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key that signs report links (default: a random key kept in "
            "REPORT_DIR/.link-key). Give the flows and the report server the same value "
            "when they do not share the report folder."
        ),
    )

    sign_in: Literal["off", "proxy"] = Field(
        default="off",
        description=(
            "off: the flows act as the name a run gives (requested_by; the CLI, the embedded "
            "default, tests). proxy: people sign in through the authenticating proxy, the "
            "Prefect server's gateway stamps each run they create with their name, and the "
            "flows act as that stamp only (selective-sync ui sets it)."
        ),
    )
    proxy_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The secret the sign-in proxy sends with each request (its header "
            "X-Selective-Sync-Proxy-Secret); the servers believe its user header only "
            "beside it."
        ),
    )
    service_token: SecretStr | None = Field(
        default=None,
        description=(
            "The token programs (served deployments, workers, the CLI) present to the "
            "Prefect server's gateway: give them the same value as PREFECT_API_AUTH_STRING "
            "(or PREFECT_API_KEY)."
        ),
    )

    alert_below_percent: float | None = Field(
        default=99.0,
        ge=0,
        le=100,
        description=(
            "A Verification Summary alerts when the district's overall accuracy is below "
            "this (percent, as the reports print it); off (or empty) turns it off."
        ),
    )
    alert_drop_points: float | None = Field(
        default=1.0,
        gt=0,
        description=(
            "A Verification Summary alerts when the overall accuracy dropped by more than "
            "this many points since the previous run; off (or empty) turns it off."
        ),
    )
    alert_on_failed_keys: bool = Field(
        default=True,
        description="A reconciliation alerts when it leaves any key failing (or errors).",
    )

    @field_validator("alert_below_percent", "alert_drop_points", mode="before")
    @classmethod
    def _threshold_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
            return None
        return value

    @field_validator("reports_base_url")
    @classmethod
    def _http_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @cached_property
    def resolved_district_url(self) -> str:
        return self.district_url or sqlite_url(self.data_dir / "district.db")

    @cached_property
    def resolved_state_url(self) -> str:
        return self.state_url or sqlite_url(self.data_dir / "state.db")

    @cached_property
    def resolved_rights_url(self) -> str:
        # With a real state database every worker reaches it, so rights live there; the
        # embedded demo keeps them beside it so regenerating the demo keeps the rights.
        if self.rights_url:
            return self.rights_url
        if self.state_url:
            return self.state_url
        return sqlite_url(self.data_dir / "rights.db")

    @cached_property
    def resolved_report_dir(self) -> Path:
        return self.report_dir or self.data_dir / "reports"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def get_settings() -> Settings:
    """The settings as the environment holds them now (``SELECTIVE_SYNC_*``): read again
    whenever the environment (or the working folder a relative path is taken from)
    changed, kept otherwise: building them costs about 15 ms, and a command asks several
    times (each engine's SQLite timeout, the rights, the districts)."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))
    return _settings_for(env, os.getcwd())


@lru_cache(maxsize=8)
def _settings_for(_env: tuple, _cwd: str) -> Settings:
    return Settings()


def configured_districts(settings: Settings) -> list[DistrictConfig]:
    """Every enabled district, the default one first.

    Without a districts file: the single-district settings, then ``DISTRICTS`` (JSON).
    With one, the file lists the districts; the single-district settings add one only when
    ``DISTRICT_URL`` is set, and the default is ``DISTRICT_NUMBER`` when set, else the
    file's first enabled district. A number listed twice is refused.
    """
    listed = list(settings.districts)
    from_file = load_districts_file(settings.districts_file) if settings.districts_file else []
    in_json = {d.number for d in listed}
    for entry in from_file:
        if entry.number in in_json:
            raise DistrictsFileError(
                f"{settings.districts_file}: district {entry.number} is also in "
                "SELECTIVE_SYNC_DISTRICTS; list each district once"
            )
    listed += from_file
    explicit = settings.model_fields_set
    if not from_file or "district_url" in explicit:
        default = DistrictConfig(
            number=settings.district_number,
            name=settings.district_name,
            url=settings.resolved_district_url,
        )
        others = [d for d in listed if d.number != default.number and d.enabled]
        return [default, *others]
    enabled = [d for d in listed if d.enabled]
    if "district_number" in explicit:
        first = [d for d in enabled if d.number == settings.district_number]
        return first + [d for d in enabled if d.number != settings.district_number]
    return enabled


def resolve_district(settings: Settings, number: int | None = None) -> DistrictConfig:
    """The district numbered ``number`` (default: the configured district)."""
    districts = configured_districts(settings)
    if not districts:
        raise DistrictNotConfigured(number or settings.district_number, ["none enabled"])
    if number is None:
        return districts[0]
    for district in districts:
        if district.number == number:
            return district
    raise DistrictNotConfigured(number, [f"{d.number} {d.name}" for d in districts])


# ---------------------------------------------------------------- the districts file

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_districts_file(path: Path) -> list[DistrictConfig]:
    """The districts listed in a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file.

    Either format holds a list ``districts`` of entries with ``number``, ``name``, ``url``
    and optionally ``enabled`` (default true); ``${NAME}`` in a URL is replaced by the
    environment variable NAME (passwords stay out of the file). Anything wrong is refused
    with DistrictsFileError naming the file, the line and the problem.
    """
    path = Path(path).expanduser()
    try:
        stat = path.stat()
    except OSError as exc:
        raise DistrictsFileError(f"cannot read the districts file {path}: {exc.strerror}") from exc
    entries = _parsed_entries(str(path), stat.st_mtime_ns, stat.st_size)
    districts: list[DistrictConfig] = []
    seen: dict[int, int] = {}
    for line, raw in entries:
        district = _district_entry(path, line, raw)
        if district.number in seen:
            raise DistrictsFileError(
                f"{path}, line {line}: district {district.number} is listed twice "
                f"(first on line {seen[district.number]})"
            )
        seen[district.number] = line
        districts.append(district)
    return districts


@lru_cache(maxsize=8)
def _parsed_entries(path: str, _mtime_ns: int, _size: int) -> tuple[tuple[int, Any], ...]:
    """(line, raw entry) of each district, parsed once per version of the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DistrictsFileError(f"cannot read the districts file {path}: {exc}") from exc
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _yaml_entries(path, text)
    if suffix == ".toml":
        return _toml_entries(path, text)
    raise DistrictsFileError(
        f"the districts file {path} must end in .yaml, .yml or .toml (got {suffix or 'none'})"
    )


def _yaml_entries(path: str, text: str) -> tuple[tuple[int, Any], ...]:
    import yaml  # a Prefect dependency

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise DistrictsFileError(_yaml_problem(path, exc)) from exc
    if isinstance(node, yaml.MappingNode):
        found = [v for k, v in node.value if getattr(k, "value", None) == "districts"]
        if not found:
            raise DistrictsFileError(f"{path}, line 1: no 'districts' list in the file")
        node = found[0]
    if not isinstance(node, yaml.SequenceNode):
        line = node.start_mark.line + 1 if node is not None else 1
        raise DistrictsFileError(f"{path}, line {line}: 'districts' must be a list of entries")
    loader = yaml.SafeLoader(text)
    try:
        return tuple(
            (item.start_mark.line + 1, loader.construct_object(item, deep=True))
            for item in node.value
        )
    except yaml.MarkedYAMLError as exc:
        raise DistrictsFileError(_yaml_problem(path, exc)) from exc
    finally:
        loader.dispose()


def _yaml_problem(path: str, exc) -> str:
    """``path, line L: not valid YAML: problem`` (and where the broken part started)."""
    mark = exc.problem_mark or exc.context_mark
    line = f", line {mark.line + 1}" if mark is not None else ""
    text = f"{path}{line}: not valid YAML: {exc.problem}"
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        text += f" ({exc.context} on line {exc.context_mark.line + 1})"
    return text


def _toml_entries(path: str, text: str) -> tuple[tuple[int, Any], ...]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message ends "(at line L, column C)".
        raise DistrictsFileError(f"{path}: not valid TOML: {exc}") from exc
    districts = document.get("districts")
    if not isinstance(districts, list):
        raise DistrictsFileError(
            f"{path}, line 1: no [[districts]] tables (or 'districts' list) in the file"
        )
    # tomllib keeps no positions: the n-th entry is the n-th [[districts]] header.
    headers = [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[[districts]]"]
    return tuple((headers[i] if i < len(headers) else 1, raw) for i, raw in enumerate(districts))


def _district_entry(path: Path, line: int, raw: Any) -> DistrictConfig:
    where = f"{path}, line {line}"
    if not isinstance(raw, dict):
        raise DistrictsFileError(f"{where}: a district entry must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - set(DistrictConfig.model_fields))
    if unknown:
        raise DistrictsFileError(
            f"{where}: unknown field {', '.join(map(str, unknown))} "
            "(expected number, name, url, enabled)"
        )
    entry = dict(raw)
    if isinstance(entry.get("url"), str):
        entry["url"] = _substitute(where, entry["url"])
    try:
        return DistrictConfig.model_validate(entry, strict=True)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "entry"
        raise DistrictsFileError(f"{where}: {field}: {problem['msg']}") from exc


def _substitute(where: str, url: str) -> str:
    """``url`` with each ``${NAME}`` replaced by the environment variable NAME."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _ENV_NAME.fullmatch(name):
            raise DistrictsFileError(f"{where}: url: ${{{name}}} is not a variable name")
        if name not in os.environ:
            raise DistrictsFileError(f"{where}: url: the variable {name} is not set")
        return os.environ[name]

    return _PLACEHOLDER.sub(value, url)
