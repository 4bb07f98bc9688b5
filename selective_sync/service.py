"""Entry-point helpers shared by the CLI and the Prefect tasks: engines in, typed results out."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .db import check_schema, make_engine
from .districts import resolve_district
from .models import DistrictVerification
from .registry import get_object
from .settings import Settings
from .verify import verify_district

log = logging.getLogger(__name__)


def verification_summary(
    settings: Settings, district: int | None = None, objects: Sequence[str] | None = None
) -> DistrictVerification:
    """Verify ``objects`` (default: every registry object) for one configured district."""
    config = resolve_district(settings, district)
    names = [get_object(o).name for o in objects] if objects else None
    district_engine = make_engine(config.url)
    state_engine = make_engine(settings.resolved_state_url)
    try:
        check_schema(district_engine, "district")
        check_schema(state_engine, "state")
        return verify_district(
            district_engine,
            state_engine,
            config.number,
            config.name,
            names,
            chunk_rows=settings.verify_chunk_rows,
        )
    finally:
        district_engine.dispose()
        state_engine.dispose()
