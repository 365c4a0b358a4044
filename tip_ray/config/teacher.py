"""teacher: the frozen model's scorers and the signal form they send (a discriminated union on
``type``). This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from tip_ray.config.base import Strict
from tip_ray.config.teacher_server import TeacherServerConfig, check_server_section


class HiddenSignal(Strict):
    """Teacher final hidden states: exact, d values per token; learner holds the teacher LM head."""

    type: Literal["hidden"]


class FullSignal(Strict):
    """Teacher log-probs over the whole vocabulary: exact, V values per token."""

    type: Literal["full"]


class TopKSignal(Strict):
    """Teacher top-k log-probs plus one tail bucket: approximate, 2k+1 values per token."""

    type: Literal["topk"]
    k: int = Field(default=64, gt=0, description="Teacher tokens kept per position.")


TeacherSignalForm = Annotated[
    Union[HiddenSignal, FullSignal, TopKSignal], Field(discriminator="type")
]


class TeacherConfig(Strict):
    signal: TeacherSignalForm = Field(default_factory=lambda: HiddenSignal(type="hidden"))
    num_scorers: int = Field(default=1, gt=0, description="Teacher replicas that score.")
    backend: Literal["hf", "vllm", "server"] = Field(
        default="hf", description="vllm serves only the topk form; server: an external `vllm serve` (teacher.server)."
    )
    server: TeacherServerConfig | None = Field(
        default=None, description="The external server, with teacher.backend 'server'."
    )
    micro_batch_size: int = Field(default=16, gt=0, description="Sequences per teacher forward (per request to a server).")

    @model_validator(mode="after")
    def _vllm_needs_topk(self) -> "TeacherConfig":
        if self.backend in ("vllm", "server") and self.signal.type != "topk":
            raise ValueError(
                f"teacher.backend {self.backend!r} returns top-k log-probs only: set teacher.signal.type "
                f"to 'topk' (got {self.signal.type!r}) or use teacher.backend 'hf'"
            )
        check_server_section(self.backend, self.server, getattr(self.signal, "k", None))
        return self
