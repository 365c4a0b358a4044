"""One driver per run folder: two runs writing the same checkpoints would destroy each other.

The lock is an flock on <run_dir>/.lock, so the kernel releases it when its driver dies, even by
kill -9: a resume after a crash never finds a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tip_ray.errors import TipRayError


class RunFolderBusy(TipRayError, RuntimeError):
    """Another live process is running in this run folder."""


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusy(
                f"{self.path.parent} is in use by a running tip-ray run (pid {holder}); wait for it, "
                f"stop it, or give this run another --run-dir"
            ) from None
        try:  # the pid only names the holder in a refusal: a full disk must not stop the run here
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
