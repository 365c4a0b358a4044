"""learner: the FSDP ranks, their optimiser and optional LoRA adapters. This module imports
neither torch nor ray."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, field_validator

from tip_ray.config.base import Strict
from tip_ray.config.numbers import AdamBeta


class OptimizerConfig(Strict):
    lr: float = Field(default=1e-6, gt=0.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW decoupled weight decay.")
    betas: tuple[AdamBeta, AdamBeta] = Field(default=(0.9, 0.999), description="AdamW (beta1, beta2), each in [0, 1).")
    eps: float = Field(default=1e-8, gt=0.0, description="AdamW epsilon.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warm-up steps.")
    schedule: Literal["cosine", "constant"] = Field(
        default="cosine", description="After warm-up: cosine decay to min_lr_ratio, or constant."
    )
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0, description="Cosine floor / peak.")
    grad_clip: float | None = Field(default=1.0, gt=0.0, description="Max global grad norm.")


class LoraConfig(Strict):
    """Train low-rank adapters (peft's LoRA) on a frozen base instead of every weight."""

    rank: int = Field(default=32, gt=0, description="Adapter rank r.")
    alpha: float = Field(default=32.0, gt=0.0, description="Scale numerator: updates are scaled by alpha / rank.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input.")
    target_modules: Union[Literal["all-linear"], list[str]] = Field(
        default="all-linear",
        description="Module names to adapt (e.g. [q_proj, v_proj]); all-linear is every linear "
        "layer of the trunk. The LM head and the embeddings cannot be adapted.",
    )
    base_dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="dtype of the frozen base weights; the adapters stay float32."
    )

    @field_validator("target_modules")
    @classmethod
    def _trunk_only(cls, value):
        if isinstance(value, list):
            if not value:
                raise ValueError("is empty: name at least one module, or use all-linear")
            refused = [name for name in value if name.split(".")[-1] in LORA_REFUSED_MODULES]
            if refused:
                raise ValueError(
                    f"{refused} cannot be adapted: the selective loss reads the LM head's weight "
                    f"directly and the head is tied to the embeddings in many models; adapt trunk "
                    f"modules (e.g. q_proj, v_proj) or use all-linear"
                )
        return value


LORA_REFUSED_MODULES = ("lm_head", "embed_tokens", "embed_out", "wte", "output")


class LearnerConfig(Strict):
    num_ranks: int = Field(default=1, gt=0, description="FSDP data-parallel ranks.")
    micro_batch_size: int = Field(default=8, gt=0, description="Sequences per forward/backward.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    backend: Literal["auto", "gloo", "nccl"] = Field(
        default="auto", description="torch.distributed backend: auto is nccl on GPU, else gloo."
    )
    lora: LoraConfig | None = Field(
        default=None, description="Train LoRA adapters on a frozen base; absent: full fine-tuning."
    )
