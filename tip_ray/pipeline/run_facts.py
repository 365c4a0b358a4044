"""What a stage needs to know that the config does not say: the dtype it computes in (auto
resolves by device) and the run's context window (prompt + response budget within the model's)."""

from __future__ import annotations

from tip_ray.pipeline.prepare import PreparedRun


def compute_dtype(prepared: PreparedRun, on_gpu: bool) -> str:
    dtype = prepared.config.models.dtype
    if dtype == "auto":
        return "bfloat16" if on_gpu else "float32"
    return dtype


def context_length(prepared: PreparedRun) -> int:
    """Prompt + response budget of the run, within the student's position window."""
    from tip_ray.models.loading import read_model_config

    c = prepared.config
    response = c.rollout.sampling.max_new_tokens
    if c.rollout.environment.type == "tools":  # a trajectory's turns and tool messages together
        response = max(response, c.rollout.environment.max_total_tokens)
    budget = c.data.max_prompt_tokens + response
    config = read_model_config(prepared.student_path)
    window = config.get("max_position_embeddings") or config.get("text_config", {}).get("max_position_embeddings")
    return min(budget, int(window)) if window else budget
