"""A checkpoint that cannot be written (full disk, quota, a read-only or vanished folder).

The failure surfaces in many shapes: an OSError in the driver, a RayTaskError from a learner
rank, torch.distributed.checkpoint's CheckpointException gathering every rank's error. The run
stops with one line that names the checkpoint, the reason and what is kept; the half-written
folder is deleted at once (it may be what filled the disk).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

from tip_ray.errors import TipRayError

SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
LOW_SPACE_BYTES = 1 << 20  # less free than this after a failed write: the disk is full


class CheckpointWriteFailed(TipRayError, RuntimeError):
    """A checkpoint could not be written; the previous complete one is kept."""


def _causes(exc: BaseException, seen: set[int] | None = None):
    """`exc` and everything it wraps: chained exceptions, a Ray task's cause, DCP's per-rank
    failures."""
    seen = seen if seen is not None else set()
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    yield exc
    wrapped = [exc.__cause__, exc.__context__, getattr(exc, "cause", None)]
    failures = getattr(exc, "failures", None)  # torch.distributed.checkpoint.CheckpointException
    if isinstance(failures, dict):
        wrapped += [f[0] if isinstance(f, tuple) else f for f in failures.values()]
    for inner in wrapped:
        if isinstance(inner, BaseException):
            yield from _causes(inner, seen)


def free_bytes(path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of `path` (None if unknown)."""
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def folder_bytes(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def failure_reason(exc: BaseException, free: int | None = None, needed: int | None = None) -> tuple[str, bool]:
    """(one line saying why, whether it is a lack of space) for a failed write. Not every writer
    reports ENOSPC as such (torch.save's zip writer says 'unexpected pos'): the free space left
    (`free`, measured before the partial folder is deleted) against what a checkpoint takes
    (`needed`, the previous one's size) tells a full disk too."""
    for inner in _causes(exc):
        if isinstance(inner, OSError) and inner.errno:
            where = f" ({inner.filename})" if inner.filename else ""
            return f"{os.strerror(inner.errno)}{where}", inner.errno in SPACE_ERRNOS
    lines = [line for line in str(exc).splitlines() if line.strip()]
    said = lines[-1].strip() if lines else type(exc).__name__
    if "No space left" in str(exc):
        return said, True
    if free is not None and (free < LOW_SPACE_BYTES or (needed is not None and free < needed)):
        took = f"; the previous checkpoint takes {needed // 1024} KiB" if needed else ""
        return (f"No space left on device ({free // 1024} KiB free{took}; the writer said: {said})", True)
    return said, False


def checkpoint_failed(step: int, root, kept: int | None, exc: BaseException) -> CheckpointWriteFailed:
    """The error to stop the run with when checkpoint `step` failed; `kept` is the newest
    complete checkpoint left (None if there is none). Call it before deleting the partial folder:
    the free space it measures tells a full disk."""
    root = Path(root)
    needed = folder_bytes(root / f"step_{kept}") if kept is not None else None
    reason, no_space = failure_reason(exc, free_bytes(root), needed)
    fix = "free space there (or raise the quota)" if no_space else "fix that"
    after = f"continues from step_{kept}" if kept is not None else "starts over (no checkpoint was complete yet)"
    kept_text = f"the last complete checkpoint, step_{kept}, is kept" if kept is not None else "nothing else was touched"
    return CheckpointWriteFailed(
        f"checkpoint step_{step} could not be written under {root}: {reason}. The partial checkpoint "
        f"was deleted and {kept_text}: {fix}, then run the same command again; it {after}"
    )


def write_or_stop(store, step: int, write: Callable[[], Path], passthrough: tuple = ()) -> Path:
    """Run `write` (the writing of checkpoint `step` into `store`, a CheckpointStore); if it fails
    with anything but `passthrough`, delete its partial folder and raise CheckpointWriteFailed."""
    try:
        return write()
    except passthrough:
        raise
    except Exception as exc:
        steps = store.steps()
        failed = checkpoint_failed(step, store.root, steps[-1] if steps else None, exc)  # before the delete
        store.discard(step)
        raise failed from exc
