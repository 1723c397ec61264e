"""Atomic, write-if-changed file output (nothing is ever half-written), and the cache folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from symbp.errors import SymbpError


class OutputError(SymbpError, OSError):
    """A destination that cannot be written (missing folder, permissions)."""


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path):
    """A binary file that becomes ``path`` only when the block ends without an error."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror}") from None
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (or the old file's)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
        raise


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
    with atomic_file(path) as fh:
        fh.write(data)
    return True


def cache_dir() -> Path:
    """Where downloads and rendered variants are kept: ``$XDG_CACHE_HOME/symbp``, else ``~/.cache/symbp``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symbp"
