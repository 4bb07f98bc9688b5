"""``selective-sync ui`` refuses what it cannot do before starting anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("option", ["--port", "--reports-port"])
def test_a_port_in_use_is_refused_with_one_line_and_nothing_started(tmp_path, option):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            other = spare.getsockname()[1]
        ports = {"--port": port, "--reports-port": other}
        if option == "--reports-port":
            ports = {"--port": other, "--reports-port": port}
        args = [str(BIN / "selective-sync"), "ui"]
        for name, value in ports.items():
            args += [name, str(value)]
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": str(BIN), "SELECTIVE_SYNC_DATA_DIR": str(tmp_path / "data")},
        )
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0] and option in lines[0]
    assert done.stdout == ""
    # Nothing was started: no Prefect home, no server log.
    assert not (tmp_path / "data" / "prefect").exists()


def test_the_same_port_twice_is_refused(tmp_path):
    done = subprocess.run(
        [str(BIN / "selective-sync"), "ui", "--port", "4999", "--reports-port", "4999"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(BIN), "SELECTIVE_SYNC_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 1 and "both 4999" in done.stderr, done
