"""A LoRA run end to end on a real local Ray (real gloo FSDP2 ranks, tiny models): the loss
falls, only the adapted modules change, and both exports (peft adapter folder and merged model)
reproduce the run's final evaluation."""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tests.pipeline.lora_checks import check_adapter_reproduces_run
from tip_ray.config import load_pipeline
from tip_ray.pipeline.metrics import read_metrics

LORA = {"rank": 8, "alpha": 16.0, "target_modules": ["q_proj", "v_proj", "up_proj", "down_proj"]}
GREEDY_EVAL = {"every_steps": 4, "benchmark": "demo", "num_problems": 8, "temperature": 0.0, "max_new_tokens": 12}


@pytest.mark.slow  # the demo-sized LoRA run below covers the same ground in the slow suite
def test_lora_run_learns_and_its_adapter_reproduces_the_final_eval(ray_local, tiny_pair, demo_prompts, tmp_path):
    from safetensors.torch import load_file

    from tip_ray.pipeline.supervisor import run_pipeline

    doc = tiny_pipeline_doc(
        tiny_pair, demo_prompts, tmp_path / "run",
        selection={"rule": {"type": "all"}},
        learner={"num_ranks": 1, "micro_batch_size": 4, "lora": LORA,  # 2 ranks: test_lora.py and the demo
                 "optimizer": {"lr": 2e-2, "warmup_steps": 0, "schedule": "constant"}},
        train={"steps": 4, "seed": 0, "stage_timeout_s": 240},
        eval=GREEDY_EVAL,
    )
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    config = load_pipeline(tmp_path / "p.yaml")
    summary = run_pipeline(config)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    before = load_file(str(tiny_pair.student_path / "model.safetensors"))
    after = load_file(str(summary.final_model / "model.safetensors"))
    assert set(before) == set(after)  # the merged export is a plain model
    adapted = {k for k in before if any(f".{m}.weight" in k for m in LORA["target_modules"])}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == adapted
    check_adapter_reproduces_run(config, summary)


@pytest.mark.slow
def test_lora_demo_pipeline(ray_local, tmp_path):
    """The demo's own pipeline (demo pair, TIP Soft-OR 50%, 2 ranks) with LoRA, 12 steps."""
    from tests.pipeline.lora_demo import demo_lora_config
    from tip_ray.pipeline.supervisor import run_pipeline

    config = demo_lora_config(tmp_path / "run", steps=12, eval_problems=100)
    summary = run_pipeline(config)
    rows = read_metrics(tmp_path / "run")
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first, [r["loss"] for r in rows]
    accuracy = check_adapter_reproduces_run(config, summary)
    start = dict(summary.evals)[0]
    print(f"demo LoRA: loss {first:.4f} -> {last:.4f} (mean of 3 steps), accuracy {start:.3f} -> {accuracy:.3f}")
