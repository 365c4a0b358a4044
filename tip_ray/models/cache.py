"""Derived model folders (converted GGUF files, pruned students) built once and cached.

Layout: ``${XDG_CACHE_HOME:-~/.cache}/tip-ray/<kind>/<key>/`` with a ``COMPLETE.json`` marker.
A folder is built under a temporary name and renamed into place after its marker is written,
so a half-written folder is never used; a file lock keeps two processes from building the same
one at once (the second waits, then finds it built).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

MARKER_FILE = "COMPLETE.json"


def cache_base() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/tip-ray``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tip-ray"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def record_key(record: dict) -> str:
    """A short stable key for a JSON-able record (what decides a cached folder's contents)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:24]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_marker(folder: Path) -> dict | None:
    marker = folder / MARKER_FILE
    return json.loads(marker.read_text()) if marker.is_file() else None


def cached_build(folder: Path, record: dict, build: Callable[[Path], dict | None]) -> Path:
    """``folder`` holding what ``build(staging)`` writes, built once for ``record``.

    ``build`` writes the model folder into the empty staging folder it is given and may return
    extra facts for the marker. A folder whose marker holds another record is rebuilt.
    """
    if (read_marker(folder) or {}).get("record") == record:
        return folder
    with exclusive_lock(folder.parent / f".{folder.name}.lock"):
        if (read_marker(folder) or {}).get("record") == record:
            return folder  # another process finished it meanwhile
        # Builders hold the lock, so a staging folder seen here is left from a killed build.
        for stale in folder.parent.glob(f".{folder.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
        staging.mkdir(parents=True)
        try:
            facts = build(staging) or {}
            (staging / MARKER_FILE).write_text(json.dumps({"record": record, **facts}, indent=2) + "\n")
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def build_threads() -> int:
    """Torch threads for building a derived model (and the example's own measurements): one,
    unless ``TIP_RAY_BUILD_THREADS`` asks for more.

    One thread makes a healed student the same on every machine with this torch build, and on a
    shared machine it is faster: two threads spin against each other whenever the process gets
    less than two cores (measured while other jobs ran: sampling a tiny model took 38 s with two
    threads, 1.5 s with one).
    """
    requested = os.environ.get("TIP_RAY_BUILD_THREADS")
    if not requested:
        return 1
    try:
        return max(1, int(requested))
    except ValueError:
        raise ValueError(f"TIP_RAY_BUILD_THREADS={requested!r}: expected a whole number of threads") from None


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
