"""Taking a run folder for one run: its name, its permissions, its lock, what an earlier process
left half-written, and the resolved config.

A folder the run creates is user-only (0700): it holds prompts, weights and logs, and a
checkpoint's DCP metadata is a pickle. A folder that already exists (a shared scratch folder,
`--run-dir .`, the home folder) is never changed: looser permissions are reported, not fixed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from tip_ray.checkpoint import CheckpointStore, RunLock, scrub_file
from tip_ray.config.loader import ConfigError
from tip_ray.errors import TipRayError

log = logging.getLogger("tip_ray")

RESOLVED_CONFIG = "config.resolved.yaml"


class DiskFull(TipRayError, RuntimeError):
    """The run could not write to its run folder (no space left, quota, read-only)."""


def check_run_name(name: str, template: str) -> None:
    """A run name that fills `{name}` in logging.run_dir must be one folder name: `../x`, `/x` or
    `a/b` would put the run folder outside the runs folder."""
    if "{name}" not in template:
        return
    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or name != name.strip())
    if bad:
        raise ConfigError(
            f"name: {name!r} cannot name a run folder: logging.run_dir={template!r} puts the run in "
            f"a folder named after it, so it must be one plain folder name (no '/', '\\', leading "
            f"or trailing spaces, not '.' or '..'); choose another name, or give --run-dir"
        )


def loose_permissions(mode: int) -> list[str]:
    """Who besides the owner may use a folder of permissions `mode`, in words ([] if nobody)."""
    words = []
    for who, read, write in (("group", stat.S_IRGRP, stat.S_IWGRP), ("others", stat.S_IROTH, stat.S_IWOTH)):
        can = [w for w, bit in (("read", read), ("write", write)) if mode & bit]
        if can:
            words.append(f"{who} can {' and '.join(can)} it")
    return words


def secure_run_dir(run_dir: Path, scrub: bool = True) -> None:
    """Create the run folder user-only (0700) if it is missing; an existing one is checked and
    its looser permissions reported, never changed. With `scrub`, a resolved config an older
    version wrote unmasked is masked (staying valid YAML)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        run_dir.mkdir(parents=True, mode=0o700)
        os.chmod(run_dir, 0o700)  # mkdir's mode passes through the umask; this folder is ours
    else:
        mode = stat.S_IMODE(run_dir.stat().st_mode)
        loose = loose_permissions(mode)
        if loose:
            log.warning(
                "run folder %s already exists with permissions %s (%s); it is left as it is, but "
                "its prompts, weights and logs are not private%s: `chmod 700 %s` or another --run-dir "
                "if that is not intended", run_dir, oct(mode), ", ".join(loose),
                " and others could plant a checkpoint that a resume would load" if mode & 0o022 else "",
                run_dir,
            )
    if scrub:
        scrub_file(run_dir / RESOLVED_CONFIG)


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Delete checkpoint folders whose writing never finished (a crash or a full disk): done first
    at a start, so that the space they hold is free before anything else is written."""
    for partial in CheckpointStore(run_dir, keep_last=1).remove_partial():
        log.warning("removed %s: a checkpoint whose writing never finished", partial.name)


def disk_full_message(exc: OSError, what: str, where: Path) -> str:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    hint = ("free space there (or raise the quota)" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "make it writable")
    return f"could not write {what} to {where}: {reason}; {hint}, then run the same command again"


def claim_run_folder(run_dir: Path, write_config) -> RunLock:
    """Secure the run folder, take its lock, clear partial checkpoints, then write the resolved
    config (`write_config(run_dir)`); only the lock holder writes anything."""
    secure_run_dir(run_dir, scrub=False)  # the lock holder rewrites the config, masked, below
    try:
        lock = RunLock(run_dir).acquire()
    except OSError as exc:
        raise DiskFull(disk_full_message(exc, "the run folder's lock", run_dir)) from None
    try:
        remove_partial_checkpoints(run_dir)
        try:
            write_config(run_dir)
        except OSError as exc:
            (run_dir / (RESOLVED_CONFIG + ".tmp")).unlink(missing_ok=True)
            raise DiskFull(disk_full_message(exc, "the resolved config", run_dir)) from None
    except BaseException:
        lock.release()
        raise
    return lock
