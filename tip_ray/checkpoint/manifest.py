"""The manifest of a checkpoint: every file's size and SHA-256, written last.

A checkpoint folder counts only when its manifest is present and every file it lists has the
recorded size and checksum, so a crash mid-write, a truncated file or a stray edit is detected
before anything is loaded from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tip_ray.errors import TipRayError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class CheckpointDamaged(TipRayError, RuntimeError):
    """A checkpoint folder whose manifest is missing or does not match its files."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the checkpoint folder, '/'-separated
    size: int
    sha256: str


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk, so a rename that follows is durable."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders
    finally:
        os.close(fd)


def write_manifest(folder: Path, step: int) -> list[FileEntry]:
    """Checksum every file under `folder`, fsync them, and write the manifest (last, atomically)."""
    entries = []
    for path in list_files(folder):
        fsync_path(path)
        entries.append(FileEntry(path.relative_to(folder).as_posix(), path.stat().st_size, file_sha256(path)))
    doc = {
        "format": FORMAT_VERSION,
        "step": step,
        "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in entries],
    }
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    fsync_path(tmp)
    os.replace(tmp, folder / MANIFEST_NAME)
    for sub in {folder, *(p.parent for p in list_files(folder))}:
        fsync_path(sub)
    return entries


def verify_manifest(folder: Path) -> int:
    """The step recorded in `folder`'s manifest; raises CheckpointDamaged naming the first problem."""
    path = folder / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text())
        step = int(doc["step"])
        files = [FileEntry(f["path"], int(f["size"]), str(f["sha256"])) for f in doc["files"]]
    except FileNotFoundError:
        raise CheckpointDamaged(f"{folder}: no {MANIFEST_NAME} (the checkpoint was never completed)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointDamaged(f"{path}: unreadable manifest ({exc})") from None
    if doc.get("format") != FORMAT_VERSION:
        raise CheckpointDamaged(f"{path}: manifest format {doc.get('format')!r}, expected {FORMAT_VERSION}")
    for entry in files:
        file = folder / entry.path
        if not file.is_file():
            raise CheckpointDamaged(f"{folder}: file {entry.path} is missing")
        size = file.stat().st_size
        if size != entry.size:
            raise CheckpointDamaged(f"{folder}: file {entry.path} has {size} bytes, the manifest says {entry.size}")
        if file_sha256(file) != entry.sha256:
            raise CheckpointDamaged(f"{folder}: file {entry.path} does not match its SHA-256 in the manifest")
    listed = {e.path for e in files}
    extra = [p.relative_to(folder).as_posix() for p in list_files(folder) if p.relative_to(folder).as_posix() not in listed]
    if extra:
        raise CheckpointDamaged(f"{folder}: files not in the manifest: {', '.join(extra[:3])}")
    return step
