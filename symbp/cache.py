"""Outputs kept on disk, keyed by everything they depend on, so repeating a command is instant.

A key hashes symbp's own source and templates, the SymPy and Python versions,
the spec file with the ``.py`` files beside it (helpers it may import), and
the command's own inputs (options, format). Change any of them and the entry
is simply not found. Entries live in ``$SYMBP_CACHE_DIR``, else the user cache
folder; ``SYMBP_CACHE_DIR=off`` turns caching off. Reading a key imports
neither SymPy nor torch, so a repeated ``symbp derive`` costs no SymPy import.
A damaged or unwritable cache costs only time.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from symbp.fileio import cache_dir, write_atomic

PACKAGE_ROOT = Path(__file__).resolve().parent


# hashlib and json are imported where a key is made or an entry read: with the cache off
# (SYMBP_CACHE_DIR=off) neither is needed, and a cold derivation is all start-up time
@functools.lru_cache(maxsize=1)
def _symbp_fingerprint() -> str:
    import hashlib

    h = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*")):
        if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(PACKAGE_ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _sympy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sympy")
    except PackageNotFoundError:
        return "unknown"


def spec_files(layer_ref: str):
    """The files a layer's outputs depend on beyond symbp's source; None when the reference is not a
    file or built-in this can see (then nothing is cached and the command reports the problem)."""
    if layer_ref.endswith(".py") or "/" in layer_ref or "\\" in layer_ref:
        path = Path(layer_ref)
        if not path.is_file():
            return None
        return sorted(p for p in path.resolve().parent.glob("*.py") if p.is_file())  # no dangling links
    return [] if (PACKAGE_ROOT / "layers" / f"{layer_ref}.py").is_file() else None


def key(kind: str, layer_ref: str, inputs) -> str | None:
    """The cache key of ``kind`` output for ``layer_ref`` given ``inputs`` (JSON-able), or None."""
    files = spec_files(layer_ref)
    if files is None or _folder() is None:
        return None
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(json.dumps([kind, layer_ref, _symbp_fingerprint(), _sympy_version(), sys.version_info[:2],
                         inputs], sort_keys=True, default=str).encode())
    try:
        for path in files:
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    except OSError:
        return None  # a file that cannot be read now: no caching, the command itself reports
    return h.hexdigest()


def produce(kind: str, layer_ref: str, inputs, make):
    """The cached value for this key, else ``make()``, stored only if nothing it depends on
    changed while it was made (a spec edited mid-derivation is not stored under the old key)."""
    before = key(kind, layer_ref, inputs)
    value = load(kind, before)
    if value is None:
        value = make()
        if before is not None and key(kind, layer_ref, inputs) == before:
            store(kind, before, value)
    return value


def _folder():
    configured = os.environ.get("SYMBP_CACHE_DIR")
    if configured == "off":
        return None
    return Path(configured) if configured else cache_dir()


def load(kind: str, cache_key: str | None):
    """The stored JSON value, or None (no key, no entry, or a damaged one)."""
    if cache_key is None:
        return None
    import json

    try:
        return json.loads((_folder() / kind / f"{cache_key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def store(kind: str, cache_key: str | None, value) -> None:
    if cache_key is None:
        return
    import json

    path = _folder() / kind / f"{cache_key}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(value, sort_keys=True))
    except OSError:
        pass  # a read-only cache only costs time
