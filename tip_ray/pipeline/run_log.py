"""run.log in the run folder: every event of the run, secrets masked."""

from __future__ import annotations

import logging
from pathlib import Path

from tip_ray.checkpoint import RedactingFilter

log = logging.getLogger("tip_ray")


def attach_run_log(run_dir: Path) -> logging.Handler:
    """run.log in the run folder: every event of the run, secrets masked, appended across resumes."""
    path = run_dir / "run.log"
    path.touch(mode=0o600, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler
