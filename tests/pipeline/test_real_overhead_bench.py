"""benchmarks/real_pipeline_overhead.py without running it: the configs it builds from the shipped
SmolLM2 pipeline, the thread budgets they get, the ratios and verdicts it prints, and the doc
section it rewrites. (The benchmark itself needs the real pair and minutes of CPU.)"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

from tests.benchmark_module import load_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("real_pipeline_overhead")


def test_configs_are_the_shipped_pipeline_with_only_lag_steps_and_folder_changed(bench, tmp_path):
    from tip_ray.config import load_pipeline

    shipped = load_pipeline(REPO / "pipelines" / "smollm2_pruned.yaml").model_dump()
    for key, _, lag, _ in bench.PATHS:
        config = bench.real_config(lag, 5, tmp_path / key)
        assert config.train.max_policy_lag == lag
        assert config.train.steps == 5
        assert Path(config.logging.run_dir) == tmp_path / key
        dumped = config.model_dump()
        for section in ("models", "data", "rollout", "teacher", "selection", "loss", "learner", "cluster"):
            assert dumped[section] == shipped[section], f"{key}: section {section} differs from the shipped YAML"
    assert {lag for _, _, lag, _ in bench.PATHS} == {0, 1}


def test_thread_budgets_are_fair(bench, tmp_path):
    from tip_ray.pipeline.placement import available_cores

    plans = {key: bench.thread_plan(bench.real_config(lag, 2, tmp_path / key)) for key, _, lag, _ in bench.PATHS}
    # The loop and the lag-0 pipeline run one stage at a time with the same per-stage threads.
    assert plans["inprocess"] == plans["pipeline"]
    assert plans["pipeline"]["rollout"] == available_cores()
    # At lag 1 sampling and training run at once and together stay within the cores.
    lag1 = plans["pipeline_lag1"]
    sampling_side = max(lag1["rollout"], lag1["teacher"], lag1["selector"])
    assert sampling_side + lag1["learner"] <= max(2, available_cores())


def test_ratios_and_verdicts(bench):
    rates = {"inprocess": [100.0, 120.0, 110.0], "pipeline": [90.0, 95.0, 80.0], "pipeline_lag1": [110.0]}
    summary = bench.summarise(rates)
    assert summary["inprocess"] == {"median": 110.0, "ratio": 1.0, "met": None}
    assert summary["pipeline"]["ratio"] == pytest.approx(statistics.median([90, 95, 80]) / 110.0)
    assert summary["pipeline"]["met"] is False  # 0.82 < 0.85
    assert summary["pipeline_lag1"]["met"] is False  # equal to the loop is not faster
    faster = bench.summarise({"inprocess": [100.0], "pipeline": [85.0], "pipeline_lag1": [101.0]})
    assert faster["pipeline"]["met"] is True and faster["pipeline_lag1"]["met"] is True


def test_doc_section_replaced_in_place(bench, tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from doc_sections import write_section

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## First\n\nkeep me\n\n" + bench.SECTION + "\n\nold figures\n\n## Last\n\nkeep too\n")
    result = {
        "date": "2026-01-01", "steps": 4, "warmup": 1, "repeats": 1, "machine": "x86_64, 2 cores", "load": [0.1, 1.9], "load_max": 7.5,
        "threads": {key: {"rollout": 2} for key, _, _, _ in bench.PATHS},
        "tokens_per_s": {"inprocess": [20.0], "pipeline": [18.0], "pipeline_lag1": [25.0]},
    }
    result["summary"] = bench.summarise(result["tokens_per_s"])
    write_section(doc, bench.SECTION, bench.markdown(result))
    text = doc.read_text()
    assert "old figures" not in text and "keep me" in text and text.endswith("## Last\n\nkeep too\n")
    assert text.count(bench.SECTION) == 1
    assert "0.10 at start, 1.90 at end, at most 7.50 after a path" in text
    assert "| Ray pipeline, max_policy_lag 0 | rollout 2 | 18.0 | 18.0-18.0 | 0.90 | >= 0.85: met |" in text
    assert "| Ray pipeline, max_policy_lag 1 | rollout 2 | 25.0 | 25.0-25.0 | 1.25 | > 1.00: met |" in text
    fresh = tmp_path / "fresh.md"
    write_section(fresh, bench.SECTION, bench.markdown(result))
    assert fresh.read_text().startswith("# Benchmarks\n\n" + bench.SECTION)


def test_refuses_no_steady_state_steps(bench, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["real_pipeline_overhead.py", "--steps", "1", "--warmup", "1", "--no-write"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "--steps (1) must exceed --warmup (1)" in capsys.readouterr().err
