"""The pipeline end to end on a real local Ray cluster, real gloo FSDP2 ranks, tiny HF models."""

from __future__ import annotations

import json

import torch
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config import load_pipeline
from tip_ray.pipeline.metrics import read_metrics


def load(tmp_path, doc):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_pipeline(path)


def weights_of(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def replayed_batches(config, steps):
    """The prompt batches benchmarks/real_pipeline_step.py times the standalone rollout on."""
    from tests.benchmark_module import load_benchmark
    from tip_ray.pipeline.prepare import prepare_run

    return load_benchmark("real_pipeline_step").pipeline_batches(prepare_run(config, write=False), steps)


def test_run_completes_and_trains(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.pipeline.supervisor import run_pipeline

    config = load(tmp_path, tiny_pipeline_doc(
        tiny_pair, demo_prompts, tmp_path / "run", learner={"num_ranks": 2},
        eval={"at_start": True, "every_steps": 2, "benchmark": "demo", "num_problems": 6,
              "samples_per_problem": 2, "temperature": 1.0, "max_new_tokens": 8},
    ))
    summary = run_pipeline(config)
    # Evaluated before training, after step 2, and at the end (step 3).
    assert [step for step, _ in summary.evals] == [0, 2, 3]
    assert all(0.0 <= acc <= 1.0 for _, acc in summary.evals)
    eval_rows = [json.loads(l) for l in (tmp_path / "run" / "evals.jsonl").read_text().splitlines()]
    assert [r["num_problems"] for r in eval_rows] == [6, 6, 6] and "pass@2" in eval_rows[0]
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["policy_lag"] == 0 and r["selector_lag"] == 0 for r in rows)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    # soft_or at 50%: floor(0.5 m) per rollout, so at most half of the response tokens.
    assert all(0 < r["selected_tokens"] <= r["response_tokens"] / 2 for r in rows)
    assert all(abs(sum(r[f"quadrant_share_q{q}"] for q in range(1, 5)) - 1) < 1e-6 for r in rows)
    assert (tmp_path / "run" / "config.resolved.yaml").exists()
    before, after = weights_of(tiny_pair.student_path), weights_of(summary.final_model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "the student's weights did not change"
    # Every prompt batch is distinct data, consumed in order: the sampler's batches, which
    # benchmarks/real_pipeline_step.py replays to time the rollout standalone on the same prompts.
    assert len({tuple(r["prompt_rows"]) for r in rows}) == 3
    assert [tuple(r["prompt_rows"]) for r in rows] == [b.prompt_rows for b in replayed_batches(config, 3)]


def test_policy_lag_is_bounded_and_used(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.pipeline.supervisor import run_pipeline

    config = load(tmp_path, tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run",
                                             train={"steps": 4, "max_policy_lag": 1, "seed": 0, "stage_timeout_s": 120}))
    run_pipeline(config)
    rows = read_metrics(tmp_path / "run")
    lags = [r["policy_lag"] for r in rows]
    assert max(lags) <= 1
    assert lags[0] == 0 and 1 in lags  # batch 1 was sampled while step 0 trained
    # Batches launched and not yet trained on, after each step's launch: at most L + 1 = 2 (the
    # lag is the one bound), fewer once the last batch is launched.
    assert [r["queue_in_flight"] for r in rows] == [2, 2, 1, 0]
