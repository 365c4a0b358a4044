"""Is anything else running? The cores kept busy while a benchmark waits, before it starts.

The 1-minute load average answers late: it still counts a benchmark that ended a minute ago, and
a busy spell shows in it a minute after it began. Sampling the kernel's CPU counters over a few
seconds of sleep measures what the rest of the machine does now.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STAT = Path("/proc/stat")
QUIET_BELOW = 0.25  # cores: background daemons and a terminal stay under this


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores, or None where /proc/stat is absent (not Linux)."""
    try:
        fields = STAT.read_text().splitlines()[0].split()
    except OSError:
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def busy_cores(seconds: float = 3.0) -> float | None:
    """How many cores were busy, on average, over `seconds` while this process slept; None where
    it cannot be measured."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def machine_note(busy: float | None) -> str:
    """How a benchmark's report describes the machine it ran on."""
    if busy is None:
        return "other load not measured (no /proc/stat)"
    if busy < QUIET_BELOW:
        return f"quiet: {busy:.2f} cores busy in the seconds before the start"
    return f"shared with other jobs: {busy:.2f} cores busy before the start, which slows every figure here"
