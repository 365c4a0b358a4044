"""Time budgets and incremental result files for the check's sections."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class Deadline:
    """A section's time budget, checked between cases (a running case is never interrupted)."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self._end = time.monotonic() + self.seconds

    def left(self) -> float:
        return self._end - time.monotonic()

    def allows(self, estimate_s: float = 0.0) -> bool:
        """True while the budget still has room for a case expected to take ``estimate_s``."""
        return self.left() > estimate_s


class SectionRecord:
    """A section's results, rewritten to its JSON file after every case, so that a section
    killed at its time limit still leaves every finished case behind."""

    def __init__(self, path: Path, section: str, budget_s: float):
        self.path = Path(path)
        self.data: dict[str, Any] = {
            "section": section, "status": "running", "budget_s": budget_s, "info": {}, "cases": [], "checks": [],
        }
        self._start = time.monotonic()
        self.flush()

    def info(self, **values: Any) -> None:
        self.data["info"].update(values)
        self.flush()

    def case(self, row: dict[str, Any]) -> None:
        self.data["cases"].append(row)
        self.flush()

    def check(self, name: str, passed: bool, error: float | None, tolerance: float | None, note: str = "") -> None:
        """One numerical comparison: its measured error, its tolerance, and whether it passed."""
        self.data["checks"].append(
            {"name": name, "passed": bool(passed), "error": error, "tolerance": tolerance, "note": note}
        )
        self.flush()

    def out_of_time(self, skipped: list[str]) -> None:
        """Cases left out because the section's budget ran out (recorded, not silently dropped)."""
        self.data.setdefault("skipped_for_time", []).extend(skipped)
        self.flush()

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["seconds"] = round(time.monotonic() - self._start, 2)
        self.flush()

    def flush(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        os.replace(tmp, self.path)
