"""All configuration, read from the environment (prefix ``SELECTIVE_SYNC_``), and which
districts this installation serves (``configured_districts``, ``resolve_district``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import DistrictNotConfigured

DEFAULT_DATA_DIR = Path.home() / ".selective-sync"
DEMO_DISTRICT_NUMBER = 275
DEMO_DISTRICT_NAME = "MAPLE VALLEY"


class DistrictConfig(BaseModel):
    """One district this installation serves: its number, name and database URL."""

    number: int = Field(gt=0)
    name: str = Field(min_length=1)
    url: str


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
    district_number: int = Field(default=DEMO_DISTRICT_NUMBER, gt=0)
    district_name: str = Field(default=DEMO_DISTRICT_NAME, min_length=1)
    districts: list[DistrictConfig] = Field(
        default_factory=list,
        description='More districts, as JSON: [{"number": 276, "name": "...", "url": ...}].',
    )
    sqlite_busy_timeout_s: float = Field(
        default=5.0, gt=0, description="How long a SQLite writer waits for a lock."
    )
    verify_chunk_rows: int = Field(
        default=20_000, gt=0, description="Rows fetched per round trip while verifying."
    )
    task_runner: Literal["thread", "dask"] = "thread"
    max_workers: int = Field(default=8, gt=0, description="Bound on concurrent sync tasks.")
    dask_address: str | None = None
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
    """Read settings afresh from the environment (cheap; callers may keep the result)."""
    return Settings()


def configured_districts(settings: Settings) -> list[DistrictConfig]:
    """The default district (from the single-district settings) followed by any others."""
    default = DistrictConfig(
        number=settings.district_number,
        name=settings.district_name,
        url=settings.resolved_district_url,
    )
    others = [d for d in settings.districts if d.number != default.number]
    return [default, *others]


def resolve_district(settings: Settings, number: int | None = None) -> DistrictConfig:
    """The district numbered ``number`` (default: the configured district)."""
    districts = configured_districts(settings)
    if number is None:
        return districts[0]
    for district in districts:
        if district.number == number:
            return district
    raise DistrictNotConfigured(number, [f"{d.number} {d.name}" for d in districts])
