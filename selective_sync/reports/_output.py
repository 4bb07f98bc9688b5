"""Writing a report file atomically: a temp file in the target folder, then os.replace."""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from ..errors import BadInput


def _umask() -> int:
    # Read once at import: os.umask can only be read by setting it, which is not thread-safe
    # later on, when flows render reports from worker threads.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; a finished report gets the mode a plain open() would give it.
_FILE_MODE = 0o666 & ~_umask()


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """The target path, or BadInput when it obviously cannot be written (before any work)."""
    target = Path(path)
    if target.is_dir():
        raise BadInput(f"cannot write report to {target}: it is a directory")
    parent = target.parent
    if not parent.is_dir():
        reason = "not a directory" if parent.exists() else "no such directory"
        raise BadInput(f"cannot write report to {target}: {reason}: {parent}")
    return target


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces ``path``, on any failure it is removed.

    The temp file is created first, so an unwritable folder fails with BadInput before the
    caller spends seconds rendering.
    """
    target = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise BadInput(f"cannot write report to {target}: {_reason(exc)}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(tmp)
        raise BadInput(f"cannot write report to {target}: {_reason(exc)}") from exc
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


_SPACES = {"\t": " ", "\n": " ", "\r": " ", "\v": " ", "\f": " "}


def printable(text: str) -> str:
    """``text`` safe for a one-line cell in any format, otherwise printed literally.

    Line breaks and tabs become spaces (a value must not break a report's line structure);
    other control characters, lone surrogates and U+FFFE/U+FFFF, which XML cannot hold,
    become U+FFFD.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _SPACES:
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cs") or ch in ("\ufffe", "\uffff"):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)
