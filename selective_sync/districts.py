"""Which districts this installation serves, and where each district's database is."""

from __future__ import annotations

from .errors import BadInput
from .settings import DistrictConfig, Settings


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
    served = ", ".join(f"{d.number} {d.name}" for d in districts)
    raise BadInput(f"district {number} is not configured here (configured: {served})")
