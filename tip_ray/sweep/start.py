"""The figures a sweep's runs started from (the student's accuracy before distillation and how
it was measured), kept with the results: `--report-only` elsewhere then reports them instead of
taking them from another machine's model cache, and starting the sweep over forgets them."""

from __future__ import annotations

import json
from pathlib import Path

START_FILE = "start.json"


def write_start(report_dir: Path, notes: str, start_accuracy: float | None) -> None:
    (report_dir / START_FILE).write_text(json.dumps({"notes": notes, "start_accuracy": start_accuracy}) + "\n")


def read_start(report_dir: Path) -> dict | None:
    path = report_dir / START_FILE
    return json.loads(path.read_text()) if path.is_file() else None
