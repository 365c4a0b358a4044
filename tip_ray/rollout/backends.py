"""Rollout backends by name (`rollout.backend.type`): the one place a backend name meets the code
that builds it. Each builder imports its engine only when chosen (vLLM is an optional extra)."""

from __future__ import annotations

from typing import Callable

import torch

from tip_ray.config.rollout import HFRollout, VLLMRollout
from tip_ray.rollout.backend import RolloutBackend


def _build_hf(backend: HFRollout, settings, tokenizer) -> RolloutBackend:
    from tip_ray.models.loading import load_causal_lm
    from tip_ray.rollout.hf import HFGenerateBackend

    model = load_causal_lm(settings.model_path, dtype=settings.dtype)
    if torch.cuda.is_available():
        model = model.cuda()
    return HFGenerateBackend(
        model,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        batch_size=backend.batch_size,
    )


def _build_vllm(backend: VLLMRollout, settings, tokenizer) -> RolloutBackend:
    from tip_ray.rollout.vllm_backend import VLLMBackend

    # The engine runs in the learner's dtype and keeps the actor's thread budget; its context
    # is the run's prompt + response budget, not the model's full window. Multi-turn rollouts
    # resend each conversation every turn: prefix caching turns that into work on the new tokens.
    multi_turn = settings.rollout.environment.type != "single_turn"
    return VLLMBackend(
        settings.model_path,
        tokenizer=tokenizer,
        dtype=settings.dtype,
        seed=settings.seed,
        num_threads=settings.num_threads,
        max_model_len=settings.max_model_len,
        tensor_parallel_size=backend.tensor_parallel_size,
        gpu_memory_utilization=backend.gpu_memory_utilization,
        kv_cache_space_gib=backend.kv_cache_space_gib,
        enforce_eager=backend.enforce_eager,
        sleep_when_idle=backend.sleep_when_idle,
        prefix_caching=True if multi_turn else None,
    )


ROLLOUT_BACKENDS: dict[str, Callable[..., RolloutBackend]] = {"hf": _build_hf, "vllm": _build_vllm}
"""Builder of each rollout backend: f(backend section, RolloutSettings, tokenizer) -> RolloutBackend."""


def build_backend(settings, tokenizer) -> RolloutBackend:
    backend = settings.rollout.backend
    return ROLLOUT_BACKENDS[backend.type](backend, settings, tokenizer)
