"""Files written whole or not at all: every file jrnn writes (Keras archives and weights,
checkpoints) goes through :func:`atomic_write`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def umask() -> int:
    """The process' umask, read without changing it where Linux says it (setting it to
    read it would leave other threads a moment of umask 0)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through a temporary file renamed over it (``write``: the bytes, or a
    function writing them to the open file): a reader never sees half a file, a link is
    followed (its target replaced), a replaced file keeps its permissions and a new one
    gets the umask's (``mkstemp`` alone would leave 0600)."""
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot write {path!r}: the directory {directory!r} does not exist"
        )
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~umask()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".jrnn-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(write):
                write(f)
            else:
                f.write(write)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
