"""A tools run on a real local Ray cluster: the built-in calculator environment, env/ metrics in
every metrics row, statistics and updates over model-written tokens only."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc


@pytest.mark.slow  # a Ray run with multi-turn rollouts: about a minute on 2 loaded cores
def test_a_tools_run_on_ray_writes_environment_metrics(ray_local, tool_model, tmp_path):
    from tip_ray.config import load_pipeline
    from tip_ray.models.loading import load_tokenizer
    from tip_ray.models.tiny import DEFAULT_TEACHER_SPEC, TinyPair, build_tiny_model, save_model
    from tip_ray.pipeline.metrics import read_metrics
    from tip_ray.pipeline.supervisor import run_pipeline

    tokenizer = load_tokenizer(str(tool_model))
    teacher = save_model(build_tiny_model(DEFAULT_TEACHER_SPEC, len(tokenizer), seed=1), tokenizer, tmp_path / "teacher")
    pair = TinyPair(tokenizer_path=tool_model, teacher_path=teacher, student_path=tool_model)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": u, "answer": "5"}) + "\n" for u in ["add", "hi"]))
    doc = tiny_pipeline_doc(
        pair, prompts, tmp_path / "run",
        data={"chat_template": "auto", "shuffle": False},
        rollout={"prompts_per_step": 2, "samples_per_prompt": 1, "sampling": {"temperature": 0.0, "max_new_tokens": 64},
                 "environment": {"type": "tools", "name": "calculator", "max_turns": 3, "max_total_tokens": 160}},
        train={"steps": 2, "seed": 0, "stage_timeout_s": 300},
    )
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    run_pipeline(load_pipeline(tmp_path / "p.yaml"))
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    first = rows[0]  # step 1 sampled with the untouched student: its scripted turns
    assert first["env/tool_calls"] == 1 and first["env/tool_errors"] == 0 and first["env/turns_mean"] == 1.5
    for row in rows:
        assert row["response_tokens"] == row["env/model_tokens"] > 0
        assert row["env/trajectories"] == 2 and 0 < row["env/model_token_share"] <= 1
        assert math.isfinite(row["loss"]) and 0 < row["selected_tokens"] <= row["response_tokens"]
