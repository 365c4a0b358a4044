"""The whole Ray pipeline with `rollout.backend.type: vllm`: the rollout actor runs a vLLM engine
that takes the learner's weights after every update (exactly on-policy)."""

from __future__ import annotations

import json

import pytest

from tests.vllm_suite.conftest import STUDENT_SPEC, require_vllm
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.models.tiny import DEFAULT_TEACHER_SPEC, TinyModelSpec, save_tiny_pair
from tests.pipeline_doc import tiny_pipeline_doc

require_vllm()
pytestmark = pytest.mark.vllm


def run_two_steps(tmp_path, demo_prompts, teacher_spec: TinyModelSpec = DEFAULT_TEACHER_SPEC,
                  **sections) -> list[dict]:
    """Two exactly on-policy steps of the tiny pipeline on an embedded Ray; their metrics rows."""
    import ray

    from tip_ray.tasks.arithmetic import ALPHABET
    from tip_ray.pipeline.supervisor import run_pipeline

    if ray.is_initialized():  # the run starts (and stops) its own embedded Ray
        ray.shutdown()
    pair = save_tiny_pair(tmp_path / "pair", teacher_spec=teacher_spec, student_spec=STUDENT_SPEC,
                          alphabet=ALPHABET)
    doc = tiny_pipeline_doc(
        pair, demo_prompts, tmp_path / "run",
        train={"steps": 2, "seed": 0, "stage_timeout_s": 300, "max_policy_lag": 0},
        cluster={"address": "local", "num_cpus": 2},
        **sections,
    )
    summary = run_pipeline(PipelineConfig.model_validate(doc))
    assert summary.steps == 2 and summary.skipped_steps == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    return steps


@pytest.mark.parametrize("weight_sync", ["object_store", "broadcast"])
def test_pipeline_steps_with_vllm_rollouts(tmp_path, demo_prompts, weight_sync):
    steps = run_two_steps(
        tmp_path, demo_prompts,
        rollout={"backend": {"type": "vllm", "kv_cache_space_gib": 1}, "num_workers": 1,
                 "prompts_per_step": 4, "samples_per_prompt": 2,
                 "sampling": {"temperature": 1.0, "max_new_tokens": 24}, "weight_sync": weight_sync},
    )
    # Step 2's rollouts came from the weights step 1 produced: synced into the running engine.
    assert all(r["policy_lag"] == 0 for r in steps)
    assert all(r["response_tokens"] > 0 for r in steps)
    assert all(r["weight_sync"] == weight_sync for r in steps)


def test_pipeline_steps_with_a_vllm_teacher(tmp_path, demo_prompts):
    """`teacher.backend: {type: vllm}` puts a vLLM engine behind the teacher stage (top-k signals)."""
    # vLLM's CPU attention needs head_dim >= 32 for the engine's model, here the teacher.
    teacher_spec = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                                 intermediate_size=128, max_position_embeddings=256)
    steps = run_two_steps(
        tmp_path, demo_prompts, teacher_spec=teacher_spec,
        teacher={"backend": {"type": "vllm"}, "signal": {"type": "topk", "k": 8}},
    )
    assert all(r["teacher_signal"] == "topk" and r["stats_approximate"] for r in steps)
