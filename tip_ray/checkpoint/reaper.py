"""Nothing of an embedded Ray outlives its driver, however the driver ends.

Ray ties its daemons to the driver that started them, but when the driver is killed (kill -9,
the OOM killer) some of Ray's helper processes (its dashboard and runtime-env agents) are left
running, holding memory (and, on a GPU machine, possibly devices) that the resumed run needs.
So a driver that starts an embedded Ray also starts this small watcher, in its own session: it
waits for the driver's end (its stdin pipe closes, whatever killed the driver) and then ends
every process that still has files open in, or names, that Ray session's folder. The folder is
unique to the run's Ray, so no other Ray on the machine is touched.

Run as: python -m tip_ray.checkpoint.reaper SESSION_DIR DRIVER_PID (started by start_reaper). The
driver itself is never touched: when it ends normally it closes the pipe while still alive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

SWEEPS = 3
SWEEP_INTERVAL_S = 2.0


def session_processes(session_dir: str, spare: int = -1) -> list[int]:
    """Pids of this user's live processes that name `session_dir` or hold a file open in it
    (except this process and `spare`)."""
    import psutil

    me = os.getpid()
    uid = os.getuid()
    found = []
    for proc in psutil.process_iter(["pid", "uids", "cmdline", "status"]):
        try:
            info = proc.info
            if info["pid"] in (me, spare) or info["uids"] is None or info["uids"].real != uid:
                continue
            if info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if session_dir in " ".join(info["cmdline"] or []) or any(
                f.path.startswith(session_dir) for f in proc.open_files()
            ):
                found.append(info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def sweep(session_dir: str, spare: int = -1) -> int:
    import psutil

    killed = 0
    for pid in session_processes(session_dir, spare):
        try:
            psutil.Process(pid).kill()
            killed += 1
        except psutil.NoSuchProcess:
            pass
    return killed


def start_reaper(session_dir: str) -> subprocess.Popen | None:
    """Start the watcher for `session_dir`; close its stdin (or die) to let it sweep and exit."""
    if not session_dir or not os.path.isdir(session_dir):
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "tip_ray.checkpoint.reaper", os.path.realpath(session_dir), str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # signals aimed at the driver's process group spare it
        close_fds=True,
    )


def stop_reaper(reaper: subprocess.Popen | None, wait_s: float = 0.0) -> None:
    if reaper is None:
        return
    try:
        reaper.stdin.close()
    except OSError:
        pass
    if wait_s:
        try:
            reaper.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass


def main(argv: list[str]) -> int:
    session_dir, driver = argv[0], int(argv[1])
    # Blocks until the driver closes the pipe or dies (the kernel closes it then).
    while sys.stdin.buffer.read(4096):
        pass
    for i in range(SWEEPS):
        sweep(session_dir, spare=driver)
        if i + 1 < SWEEPS:
            time.sleep(SWEEP_INTERVAL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
