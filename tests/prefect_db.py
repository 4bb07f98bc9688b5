"""A Prefect database already migrated, copied into each new ``PREFECT_HOME`` a test starts
a Prefect server on, and into the session's ``prefect_test_harness`` server of each
pytest-xdist worker.

Prefect migrates a new database on the server's first start: about 5 CPU-seconds of the
11 s a fresh ``prefect server start`` takes to answer here (6 s from a migrated copy), and
the tests start about ten servers; the harness's server spent about 20 CPU-s migrating. The
copy is the database that start would have made (``prefect server database upgrade``,
nothing in it); the server still checks it is at Prefect's head revision when it starts.

It also holds the one-certificate CA file the suite gives Prefect's clients.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

DB_FILE = "prefect.db"


def migrated_template(shared: Path) -> Path:
    """``shared/prefect-template/prefect.db``, made once for the whole test run: the first
    pytest-xdist worker to ask makes it under a file lock, the others wait and reuse it."""
    folder = shared / "prefect-template"
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / DB_FILE
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            _migrate(folder)
    return template


def _migrate(folder: Path) -> None:
    home = folder / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = Path(sys.executable).parent / "prefect"
    done = subprocess.run(
        [str(prefect), "server", "database", "upgrade", "-y"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"prefect server database upgrade failed:\n{done.stderr}"
    # Everything in the one file (a copy of it alone is then the whole database).
    conn = sqlite3.connect(home / DB_FILE)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    # Renamed into place last, so a reader never sees half a file.
    (home / DB_FILE).rename(folder / DB_FILE)


def seed_home(template: Path, home: Path) -> None:
    """Put a copy of the migrated database where a server using ``home`` will look."""
    seed_file(template, home / DB_FILE)


HARNESS_DB_FILE = "prefect-test.db"
"""The file ``prefect_test_harness`` (Prefect 3.9.1) keeps its server's database in."""


def seed_file(template: Path, path: Path) -> None:
    """A copy of the migrated database at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)


def small_ca_file() -> Path:
    """A CA file holding one root certificate (the first of certifi's), for Prefect clients
    that only ever talk plain http to a loopback API: loading it costs under 1 ms, certifi's
    whole bundle 27 ms, for each client. Written once, beside the system's temporary files."""
    import re
    import tempfile

    import certifi

    path = Path(tempfile.gettempdir()) / "selective-sync-tests-ca.pem"
    if not path.exists():
        bundle = Path(certifi.where()).read_text(encoding="ascii")
        first = re.search(
            r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", bundle, re.S
        )
        partial = path.with_suffix(f".{os.getpid()}")
        partial.write_text(first.group(0), encoding="ascii")
        partial.replace(path)  # whole or absent, whichever process writes it
    return path
