"""models: where the student, the teacher and the tokenizer come from (a discriminated union on
``type``), and the parameter dtype. This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from tip_ray.config.base import Strict
from tip_ray.config.model_sources import GGUFModel, PrunedModel


class LocalModel(Strict):
    """A Hugging Face model folder on local disk (config.json, weights, tokenizer)."""

    type: Literal["local"] = "local"
    path: str = Field(description="Folder holding config.json and the weights.")


class HubModel(Strict):
    """A Hugging Face hub model name; only usable where a network or a filled HF cache exists."""

    type: Literal["hub"]
    name: str = Field(description="Hub repository id, e.g. Qwen/Qwen3-4B.")
    revision: str | None = Field(default=None, description="Branch, tag or commit.")


class DemoModel(Strict):
    """The built-in demo models, trained on first use and cached (see `tip-ray demo`)."""

    type: Literal["demo"]
    role: Literal["teacher", "student"] = Field(description="Which of the two demo models.")
    task: Literal["arithmetic", "prices"] = Field(
        default="arithmetic",
        description="arithmetic: the demo pair; prices: the pair taught to call the prices tool (tip-ray demo --task prices).",
    )


ModelSource = Annotated[
    Union[LocalModel, HubModel, DemoModel, GGUFModel, PrunedModel], Field(discriminator="type")
]
PrunedModel.model_rebuild(_types_namespace={"ModelSource": ModelSource})  # its base is any source


class ModelsConfig(Strict):
    student: ModelSource = Field(description="The model being trained; it also samples rollouts.")
    teacher: ModelSource | None = Field(
        default=None, description="The frozen model being distilled from (or name several under teachers:)."
    )
    tokenizer: ModelSource | None = Field(
        default=None, description="Tokenizer source; defaults to the student's folder."
    )
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        default="auto", description="Parameter dtype: auto is bfloat16 on GPU, float32 on CPU."
    )
