"""The checkpoints of one run: <run_dir>/checkpoints/step_<N>/, written atomically, the last K kept.

Writing: everything goes into a hidden temporary folder; the manifest (sizes and checksums) is
written last, then the folder is renamed to step_<N> in one os.replace. A crash at any moment
leaves either the complete new checkpoint or none (the previous ones are untouched).

Reading: the newest folder whose manifest matches its files wins; a damaged one is renamed
damaged_step_<N> (kept for inspection, never loaded again) with a warning, and the previous one
is used.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from tip_ray.checkpoint.manifest import CheckpointDamaged, fsync_path, verify_manifest, write_manifest

log = logging.getLogger("tip_ray")

STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass(frozen=True)
class FoundCheckpoint:
    step: int
    path: Path


class CheckpointStore:
    def __init__(self, run_dir: Path, keep_last: int):
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def folder(self, step: int) -> Path:
        return self.root / f"step_{step}"

    def steps(self) -> list[int]:
        """Steps of the step_<N> folders present, oldest first (complete or not)."""
        if not self.root.is_dir():
            return []
        found = [int(m.group(1)) for p in self.root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
        return sorted(found)

    def remove_partial(self) -> list[Path]:
        """Delete temporary folders left by a write that never finished (a crash mid-checkpoint)."""
        removed = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith(".step_") and p.name.endswith(".tmp"):
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed

    def begin(self, step: int) -> Path:
        """An empty temporary folder for checkpoint `step` (user-only permissions)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        tmp = self.root / f".step_{step}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(mode=0o700)
        return tmp

    def discard(self, step: int) -> None:
        """Delete what a failed write of checkpoint `step` left (its space may be needed)."""
        for leftover in (self.root / f".step_{step}.tmp", self.root / f".step_{step}.old.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)

    def commit(self, tmp: Path, step: int) -> Path:
        """Seal `tmp` with its manifest and rename it to step_<N>; then prune to the last K."""
        write_manifest(tmp, step)
        final = self.folder(step)
        if final.exists():
            # A step written again after a resume from an older checkpoint: the new one replaces it.
            old = self.root / f".step_{step}.old.tmp"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_path(self.root)
        self.prune()
        return final

    def prune(self) -> list[int]:
        steps = self.steps()
        doomed = steps[: max(len(steps) - self.keep_last, 0)]
        for step in doomed:
            shutil.rmtree(self.folder(step), ignore_errors=True)
        return doomed

    def latest_valid(self) -> tuple[FoundCheckpoint | None, list[str]]:
        """The newest complete checkpoint, and a warning for each damaged one passed over."""
        warnings = []
        for step in reversed(self.steps()):
            path = self.folder(step)
            try:
                recorded = verify_manifest(path)
                if recorded != step:
                    raise CheckpointDamaged(f"{path}: the manifest is for step {recorded}")
            except CheckpointDamaged as exc:
                aside = self.root / f"damaged_step_{step}"
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(path, aside)
                message = f"checkpoint step_{step} is damaged ({exc}); moved to {aside.name}, trying an older one"
                log.warning(message)
                warnings.append(message)
                continue
            return FoundCheckpoint(step, path), warnings
        return None, warnings
