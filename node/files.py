"""Crash-safe file writing: nothing half-written is ever left behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Private keys and secrets are readable by the owner only.
SECRET_MODE = 0o600


def atomic_write(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temp file in the same directory, fsync, then rename over ``path``.

    The file is created with ``mode`` from the start, so a secret is never
    world-readable even for an instant.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
