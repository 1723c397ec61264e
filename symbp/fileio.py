"""Atomic, write-if-changed file output: nothing is ever half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(OSError):
    """A destination that cannot be written (missing folder, permissions)."""


def write_atomic(path, text: str) -> bool:
    """Write ``text`` to ``path`` via a temp file and rename; False if unchanged."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    data = text.encode("utf-8")
    if path.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: it is a folder; give a file name")
    if path.exists() and not path.is_file():  # /dev/stdout, a pipe: nothing to replace
        with open(path, "wb") as fh:
            fh.write(data)
        return True
    if path.is_file() and path.read_bytes() == data:
        return False
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True
