"""teacher: the frozen model's scorers, the signal form they send and the backend that computes it
(both discriminated unions on ``type``). This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from tip_ray.config.base import Strict
from tip_ray.config.numbers import FieldValueError
from tip_ray.config.teacher_server import ServerTeacher, check_server_limit
from tip_ray.config.teacher_service import ServiceTeacher


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


class HFTeacher(Strict):
    """Hugging Face forward passes in the teacher actors: every signal form."""

    type: Literal["hf"] = "hf"


class VLLMTeacher(Strict):
    """A vLLM engine in each teacher actor (the vllm extra): top-k signal form only."""

    type: Literal["vllm"]


TeacherBackend = Annotated[
    Union[HFTeacher, VLLMTeacher, ServerTeacher, ServiceTeacher], Field(discriminator="type")
]


class TeacherConfig(Strict):
    signal: TeacherSignalForm = Field(default_factory=lambda: HiddenSignal(type="hidden"))
    num_scorers: int = Field(default=1, gt=0, description="Teacher replicas that score.")
    backend: TeacherBackend = Field(
        default_factory=HFTeacher,
        description="hf, vllm (top-k form only), server: an external `vllm serve` (top-k form only), or "
                    "service: a shared teacher service on the cluster (`tip-ray teacher serve`).",
    )
    micro_batch_size: int = Field(default=16, gt=0, description="Sequences per teacher forward (per request to a server).")

    @model_validator(mode="before")
    @classmethod
    def _old_backend_spelling(cls, data):
        refuse_old_backend_spelling(data)
        return data

    @model_validator(mode="after")
    def _vllm_needs_topk(self) -> "TeacherConfig":
        kind = self.backend.type
        if kind in ("vllm", "server") and self.signal.type != "topk":
            raise ValueError(
                f"teacher.backend type {kind!r} returns top-k log-probs only: set teacher.signal.type "
                f"to 'topk' (got {self.signal.type!r}) or use teacher.backend {{type: hf}}"
            )
        if isinstance(self.backend, ServerTeacher):
            check_server_limit(self.backend, getattr(self.signal, "k", None))
        return self


def refuse_old_backend_spelling(data) -> None:
    """`backend: vllm` (a bare name) and a `server:` section beside it were the old spelling of
    teacher.backend; say what to write instead."""
    if not isinstance(data, dict):
        return
    backend = data.get("backend")
    if "server" in data:
        raise FieldValueError(
            "no longer a section of its own: its keys go into teacher.backend, "
            "`backend: {type: server, url: http://HOST:PORT, ...}`", field="server")
    if isinstance(backend, str):
        spelled = "{type: server, url: http://HOST:PORT, ...}" if backend == "server" else f"{{type: {backend}}}"
        raise FieldValueError(
            f"a backend is chosen by type: write `backend: {spelled}` instead of `backend: {backend}`",
            field="backend")
