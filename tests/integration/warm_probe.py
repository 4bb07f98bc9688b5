"""Flows that tell how their process was started, for test_warm_start (served, not tools)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from prefect import flow


@flow(name="warm-probe")
def warm_probe(out: str) -> None:
    """Write this process's pid, its parent's pid and command line, and its argv."""
    parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    record = {"pid": os.getpid(), "ppid": os.getppid(), "parent": parent, "argv": sys.argv}
    Path(out).write_text(json.dumps(record))


@flow(name="warm-sleeper")
def warm_sleeper(out: str, seconds: float = 300) -> None:
    """Say its pid, then sleep (to be cancelled)."""
    Path(out).write_text(str(os.getpid()))
    time.sleep(seconds)
