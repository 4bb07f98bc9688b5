"""Deterministic demo data: a district, a state with another district, seeded drift."""

from .generator import OTHER_DISTRICT, generate_demo
from .manifest import DemoManifest

__all__ = ["OTHER_DISTRICT", "DemoManifest", "generate_demo"]
