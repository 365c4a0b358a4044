"""Teacher backends by name (`teacher.backend.type`): the one place a backend name meets the
scorer class that runs it, with the arguments that backend needs. Hugging Face scores every
signal form; vLLM (in-process) and an external `vllm serve` score the top-k form only; a shared
teacher service scores in the form it was started with (the run checks that it is its own)."""

from __future__ import annotations

from typing import Callable

from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.run_facts import context_length
from tip_ray.teacher.scorer import ScorerSettings

TeacherStage = tuple[type, tuple, dict]
"""(class, args, kwargs) of one teacher scorer."""


def _hf_stage(settings: ScorerSettings, prepared: PreparedRun) -> TeacherStage:
    from tip_ray.teacher.scorer import TeacherScorer

    return TeacherScorer, (settings,), {}


def _vllm_stage(settings: ScorerSettings, prepared: PreparedRun) -> TeacherStage:
    from tip_ray.teacher.vllm_scorer import VLLMTeacherScorer

    return VLLMTeacherScorer, (settings,), {"max_model_len": context_length(prepared)}


def _server_stage(settings: ScorerSettings, prepared: PreparedRun) -> TeacherStage:
    from tip_ray.teacher.server_scorer import ServerTeacherScorer

    return ServerTeacherScorer, (settings,), {"tokenizer_path": prepared.tokenizer_path}


def _service_stage(settings: ScorerSettings, prepared: PreparedRun) -> TeacherStage:
    from tip_ray.teacher.service_client import ServiceTeacherClient

    # The run's id at the service: its requests are queued and served in turn under it.
    run_id = f"{prepared.config.name}@{prepared.run_dir}"
    return ServiceTeacherClient, (settings,), {"tokenizer_path": prepared.tokenizer_path, "run_id": run_id}


TEACHER_BACKENDS: dict[str, Callable[[ScorerSettings, PreparedRun], TeacherStage]] = {
    "hf": _hf_stage,
    "vllm": _vllm_stage,
    "server": _server_stage,
    "service": _service_stage,
}
