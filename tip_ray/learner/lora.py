"""LoRA students: low-rank adapters (peft) on a frozen base, trained by the FSDP2 learner.

The adapters are injected in place into the Hugging Face model, so the learner's forward pass,
sharding and selective loss are the same as for full fine-tuning. Only adapter parameters
require gradients: FSDP2 shards the frozen base too (it never reduces gradients for it) and the
optimizer is given the adapters alone, so optimizer state exists for them only.

The LM head is never adapted: the selective loss multiplies the selected hidden states by the
head's weight directly, and the gradient flows through that frozen weight into the trunk's
adapters. Rollout workers receive merged weights (base + scaling * B @ A), a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from tip_ray.errors import TipRayError

ADAPTER_NAME = "default"  # peft's name for the one adapter a model gets


class LoraSetupError(TipRayError, ValueError):
    """The LoRA settings do not fit the student model."""


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...] | str  # a tuple of names, or "all-linear"
    base_dtype: str = "float32"

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    @classmethod
    def from_config(cls, config) -> "LoraSettings | None":
        if config is None:
            return None
        targets = config.target_modules
        return cls(rank=config.rank, alpha=config.alpha, dropout=config.dropout,
                   target_modules=targets if isinstance(targets, str) else tuple(targets),
                   base_dtype=config.base_dtype)


def peft_config(settings: LoraSettings):
    from peft import LoraConfig

    targets = settings.target_modules
    return LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        bias="none", task_type="CAUSAL_LM",
    )


def add_adapters(lm: torch.nn.Module, settings: LoraSettings) -> torch.nn.Module:
    """`lm` with adapters injected in place, its base frozen (in `base_dtype`) and its adapters
    float32. Returns the same Hugging Face model object (not a PeftModel wrapper)."""
    try:
        from peft import get_peft_model
    except ImportError as exc:
        raise LoraSetupError(f"learner.lora needs the peft package ({exc}): pip install 'tip-ray[lora]'") from exc

    from tip_ray.models.loading import DTYPES

    lm = lm.to(DTYPES[settings.base_dtype])
    try:
        peft_model = get_peft_model(lm, peft_config(settings))
    except ValueError as exc:
        raise LoraSetupError(
            f"learner.lora.target_modules {settings.target_modules!r} do not fit the student "
            f"({type(lm).__name__}): {str(exc).rstrip('.')}. Name linear modules of its trunk, or use all-linear"
        ) from exc
    model = peft_model.base_model.model
    for name, param in model.named_parameters():
        if is_adapter_key(name):
            param.data = param.data.float()  # adapters train in float32 whatever the base
    head = model.get_output_embeddings()
    if head is not None and (head.weight.requires_grad or hasattr(head, "base_layer")):
        raise LoraSetupError(
            "learner.lora.target_modules adapts the LM head; the selective loss uses the head's "
            "weight directly: adapt trunk modules only"
        )
    if not isinstance(settings.target_modules, str):
        adapted = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
        unmatched = [t for t in settings.target_modules
                     if not any(name == t or name.endswith("." + t) for name in adapted)]
        if unmatched:  # peft accepts a list as long as one name matches; a typo would go unnoticed
            raise LoraSetupError(
                f"learner.lora.target_modules: {unmatched} match no linear module of the student "
                f"({type(model).__name__}); adapted were e.g. {adapted[:3]}"
            )
    return model


def check_targets(model_path: str, settings: LoraSettings) -> None:
    """Raise LoraSetupError now, before any actor starts, when the adapters do not fit the
    student (the model is built on the meta device: no weights are read or allocated)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    add_adapters(lm, settings)


def is_adapter_key(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters the optimizer updates: all of them for full fine-tuning, the adapters
    under LoRA (the frozen base gets no optimizer state)."""
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts of this rank's (possibly sharded) model."""
    def numel(p) -> int:
        return p.to_local().numel() if hasattr(p, "to_local") else p.numel()

    params = list(model.parameters())
    return sum(numel(p) for p in params if p.requires_grad), sum(numel(p) for p in params)


def merge_adapters(state: Mapping[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A plain model's state dict from a LoRA model's: every adapted linear weight becomes
    base + scaling * B @ A (computed in float32), its keys lose peft's `base_layer` level."""
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if is_adapter_key(key):
            continue
        prefix, found, leaf = key.partition(".base_layer.")
        if not found:
            merged[key] = value
            continue
        if leaf == "weight":
            a = state[f"{prefix}.lora_A.{ADAPTER_NAME}.weight"].float()
            b = state[f"{prefix}.lora_B.{ADAPTER_NAME}.weight"].float()
            value = value.float() + scaling * (b @ a)
        merged[f"{prefix}.{leaf}"] = value
    return merged


def adapter_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter tensors of a LoRA model's state dict."""
    return {k: v for k, v in state.items() if is_adapter_key(k)}


def learner_state(model, optimizer, lora: bool) -> tuple[dict, dict | None]:
    """(model, optimizer) state dicts of this rank's shards for a checkpoint (no optimizer state
    when `optimizer` is None). Under LoRA only the adapters: the frozen base (and a head tied to
    the embeddings, which the frozen-parameter filter misses) is the model folder's, loaded again
    on resume."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    options = StateDictOptions(ignore_frozen_params=lora)
    if optimizer is None:
        model_state, optim_state = get_model_state_dict(model, options=options), None
    else:
        model_state, optim_state = get_state_dict(model, optimizer, options=options)
    if lora:
        model_state = {k: v for k, v in model_state.items() if is_adapter_key(k)}
    return model_state, optim_state


def restore_learner_state(model, optimizer, model_state: dict, optim_state: dict | None, lora: bool) -> None:
    """Put state dicts filled by dcp.load back into the model (and optimizer)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_state_dict

    # Under LoRA the base is absent on purpose; dcp.load has already failed on any missing adapter.
    options = StateDictOptions(ignore_frozen_params=lora, strict=not lora)
    if optim_state is None:
        set_model_state_dict(model, model_state, options=options)
    else:
        set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state, options=options)
