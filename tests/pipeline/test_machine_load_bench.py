"""benchmarks/machine_load.py sees a busy core that the 1-minute load average would report late,
and the reports word the machine from that measurement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark_module import load_benchmark


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_a_spinning_process_counts_as_about_one_busy_core():
    bench = load_benchmark("machine_load")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = bench.busy_cores(1.0)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.6
    assert bench.machine_note(busy).startswith("shared with other jobs")


def test_the_note_says_quiet_below_the_threshold_and_admits_when_it_cannot_measure(monkeypatch, tmp_path):
    bench = load_benchmark("machine_load")
    assert bench.machine_note(0.05).startswith("quiet: 0.05 cores")
    assert bench.machine_note(bench.QUIET_BELOW).startswith("shared")
    monkeypatch.setattr(bench, "STAT", tmp_path / "absent")
    assert bench.busy_cores(0.01) is None
    assert bench.machine_note(None) == "other load not measured (no /proc/stat)"
