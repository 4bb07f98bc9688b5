"""The ``selective-sync`` command: the core's CLI, given its backend on the Prefect API.

``python -m flows.cli ...`` is the same command.
"""

from __future__ import annotations

from flows.backend import PrefectBackend
from selective_sync import cli
from selective_sync.cli.backend import configure

configure(PrefectBackend())
app = cli.app
register = cli.register


def main() -> None:
    """Console-script entry point."""
    cli.main()


if __name__ == "__main__":
    main()
