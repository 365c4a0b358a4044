"""Finding the processes of one embedded Ray by its private temp dir, and ending them by pid.

Every Ray process of a session (GCS, raylet, workers, agents) names the session folder, which
lies under the temp dir, in its command line or its environment (RAY_TMPDIR), or holds its log
files open there. Nothing here touches a process that does not, so other Ray instances on the
machine are safe.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil


def processes_under(temp_dir: Path) -> list[tuple[int, str]]:
    """(pid, short command) of live processes that belong to the Ray rooted at `temp_dir`."""
    marker = str(temp_dir)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            if (marker in cmd or proc.environ().get("RAY_TMPDIR") == marker
                    or any(f.path.startswith(marker) for f in proc.open_files())):
                found.append((proc.pid, cmd[:120]))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_gone(temp_dir: Path, timeout_s: float) -> list[tuple[int, str]]:
    """Wait until no process of that Ray is left; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = processes_under(temp_dir)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def kill_processes_under(temp_dir: Path) -> None:
    for pid, _ in processes_under(temp_dir):
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
