"""``selective-sync demo``: build the demo district and state databases."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from .common import console


def demo(
    directory: Path = typer.Option(
        None, "--dir", help="Where to write the demo (default: SELECTIVE_SYNC_DATA_DIR)."
    ),
    persons: int = typer.Option(2000, "--persons", min=1, help="Students in the district."),
    seed: int = typer.Option(7, "--seed", help="Random seed; the same seed gives the same data."),
    second_district: bool = typer.Option(
        False,
        "--second-district",
        help="Also write the database of the state's second demo district, 312 CEDAR FALLS.",
    ),
) -> None:
    """Build a demo district database and a state database with seeded discrepancies."""
    from ..demo import demo_districts, generate_demo
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
            other_district_db=second_district,
        )
    console.print(
        f"Demo district {settings.district_number} {settings.district_name}: "
        f"{persons:,} persons written to {target} (manifest: {target / 'manifest.json'})"
    )
    for name, kinds in manifest.discrepancy_counts().items():
        console.print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    if second_district:
        import json
        import shlex

        value = json.dumps(demo_districts(target))
        other = manifest.other_district or {}
        console.print(
            Text(
                f"District {other.get('number')} {other.get('name')}: its own database in "
                f"{target / str(other.get('file'))}; to serve it too:\n"
                f"  export SELECTIVE_SYNC_DISTRICTS={shlex.quote(value)}"
            ),
            soft_wrap=True,
        )
