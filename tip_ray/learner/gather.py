"""Gather a sharded student's full weights (or only its LoRA adapters) onto rank 0, on the host,
under Hugging Face names."""

from __future__ import annotations

import torch

from tip_ray.learner.lora import LoraSettings, adapter_state, merge_adapters


def gather_full_weights(model: torch.nn.Module, rank: int, lora: LoraSettings | None) -> dict[str, torch.Tensor] | None:
    """Every rank must call; rank 0 returns the full weights (adapters merged: rollout engines
    hold a plain model), the others None."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if rank != 0:
        return None
    state = {k.removeprefix("lm."): v for k, v in state.items()}
    if lora is not None:  # rollout engines hold a plain model
        state = merge_adapters(state, lora.scaling)
    return state


def gather_adapters(model: torch.nn.Module, rank: int) -> dict[str, torch.Tensor] | None:
    """The full LoRA adapters (every rank must call); rank 0 returns them, others None."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    state = get_model_state_dict(model, options=options)
    return adapter_state({k.removeprefix("lm."): v for k, v in state.items()}) if rank == 0 else None
