"""benchmarks/real_pipeline_step.py's standalone rollout, on the tiny pair: it replays the
pipeline's own batches (batch 0 as the warm-up) through the rollout stage's code."""

from __future__ import annotations

import math

import yaml

from tests.benchmark_module import load_benchmark
from tests.pipeline_doc import tiny_pipeline_doc


def test_standalone_rollout_replays_the_pipeline_batches(tiny_pair, demo_prompts, tmp_path, capsys):
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.placement import Role, plan_placement
    from tip_ray.pipeline.prepare import prepare_run

    bench = load_benchmark("real_pipeline_step")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")))
    config = load_pipeline(path)
    prepared = prepare_run(config, write=False)
    batches = bench.pipeline_batches(prepared, 3)
    assert [b.batch_id for b in batches] == [0, 1, 2]
    assert len({b.prompt_rows for b in batches}) == 3
    assert all(len(b.prompt_ids) == config.rollout.prompts_per_step for b in batches)
    rate = bench.standalone_rollout(prepared, plan_placement(config)[Role.ROLLOUT], batches, repeats=2)
    assert math.isfinite(rate) and rate > 0
    out = capsys.readouterr().out
    assert "warm-up (batch 0)" in out and out.count("(batches 1..2)") == 2


def test_the_pipeline_rate_skips_the_warm_up_step_and_weights_by_tokens():
    bench = load_benchmark("real_pipeline_step")
    rows = [{"response_tokens": 100, "rollout_tokens_per_s": 1.0},  # step 0: warm-up, left out
            {"response_tokens": 300, "rollout_tokens_per_s": 30.0},  # 10 s
            {"response_tokens": 100, "rollout_tokens_per_s": 10.0}]  # 10 s
    assert bench.steady_rollout_rate(rows) == 400 / 20
    assert bench.steady_rollout_rate(rows[:1]) == 1.0  # a one-step run: its only step
