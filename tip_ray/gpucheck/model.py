"""The check's model: a Qwen3-shaped causal LM built from its config with random weights."""

from __future__ import annotations

from pathlib import Path

import torch


def build_model(shape: dict, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """A randomly initialised Qwen3ForCausalLM of this shape, on ``device`` (no download)."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(**shape)
    with torch.device(device):  # initialise on the device directly: seconds instead of minutes on CPU
        model = AutoModelForCausalLM.from_config(config)
    return model.to(device=device, dtype=dtype)  # in case a transformers version ignores the device context


def save_model(model: torch.nn.Module, folder: Path) -> Path:
    """Write the model as a Hugging Face folder (config.json + safetensors), for the learner to load."""
    model.save_pretrained(str(folder))
    return folder


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
