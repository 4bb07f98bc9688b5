"""``prefect worker start`` whose flow runs start warm (``flows.warm_start``).

    python -m flows.worker --pool selective-sync --type process [prefect worker start options]

deployments/worker.sh runs this. It is Prefect's own process worker, started by Prefect's
own command line, after the forkserver is started with Prefect's engine and the flows of
prefect.yaml imported. A run whose deployment's command is ``python -m prefect.engine``
(prefect.yaml sets it for every deployment) is then forked from that forkserver instead of
starting a new interpreter that imports everything again; any other command is started
as Prefect starts it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flows import warm_start

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def main(argv: list[str] | None = None) -> int:
    """Start the forkserver, then hand the command line to ``prefect worker start``."""
    warm_start.install(warm_start.entrypoint_modules(PREFECT_YAML))
    from prefect.cli import app

    sys.argv = ["prefect", "worker", "start", *(sys.argv[1:] if argv is None else argv)]
    return app()


if __name__ == "__main__":
    sys.exit(main())
