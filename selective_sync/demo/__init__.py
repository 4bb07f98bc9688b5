"""Deterministic demo data: a district, a state with another district, seeded drift."""

from .generator import OTHER_DISTRICT, OTHER_DISTRICT_FILE, demo_districts, generate_demo
from .manifest import DemoManifest

__all__ = [
    "OTHER_DISTRICT",
    "OTHER_DISTRICT_FILE",
    "DemoManifest",
    "demo_districts",
    "generate_demo",
]
