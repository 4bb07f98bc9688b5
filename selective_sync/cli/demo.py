"""``selective-sync demo``: build the demo district and state databases."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console


def demo(
    directory: Path = typer.Option(
        None, "--dir", help="Where to write the demo (default: SELECTIVE_SYNC_DATA_DIR)."
    ),
    persons: int = typer.Option(2000, "--persons", min=1, help="Students in the district."),
    seed: int = typer.Option(7, "--seed", help="Random seed; the same seed gives the same data."),
) -> None:
    """Build a demo district database and a state database with seeded discrepancies."""
    from ..demo import generate_demo
    from ..settings import get_settings

    settings = get_settings()
    target = directory or settings.data_dir
    with console.status(f"Generating {persons:,} persons in {target} ..."):
        manifest = generate_demo(
            target,
            persons=persons,
            seed=seed,
            # With database URLs configured the demo is built on those servers.
            district_url=settings.district_url,
            state_url=settings.state_url,
            district_number=settings.district_number,
            district_name=settings.district_name,
        )
    console.print(
        f"Demo district {settings.district_number} {settings.district_name}: "
        f"{persons:,} persons written to {target} (manifest: {target / 'manifest.json'})"
    )
    for name, kinds in manifest.discrepancy_counts().items():
        console.print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
