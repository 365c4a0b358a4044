"""Stage settings from the config: each record holds the typed config sections its stage reads
(pydantic models, which pickle across Ray) plus the run facts the config does not have (resolved
folders, dtype, threads, names, vocabulary). The same records feed Ray actors and the in-process
loop, so both run exactly the same stage code."""

from __future__ import annotations

from tip_ray.learner.lora import LoraSettings
from tip_ray.learner.settings import LearnerSettings
from tip_ray.pipeline.placement import RolePlacement
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.run_facts import compute_dtype, context_length
from tip_ray.pipeline.teacher_backends import TEACHER_BACKENDS
from tip_ray.pipeline.teacher_routing import PreparedTeacher
from tip_ray.rollout.worker import RolloutSettings
from tip_ray.select.selector import SelectorSettings
from tip_ray.teacher.scorer import ScorerSettings


def rollout_settings(prepared: PreparedRun, plan: RolePlacement, index: int) -> RolloutSettings:
    c = prepared.config
    return RolloutSettings(
        model_path=prepared.student_path,
        rollout=c.rollout,
        seed=c.train.seed,
        dtype=compute_dtype(prepared, plan.num_gpus > 0),
        num_threads=plan.num_threads,
        name=f"rollout-{index}",
        max_model_len=context_length(prepared),
    )


def teacher_stage(prepared: PreparedRun, plan: RolePlacement, index: int,
                  teacher: PreparedTeacher | None = None) -> tuple[type, tuple, dict]:
    """(class, args, kwargs) of one teacher scorer (of `teacher`, default the run's first), by
    its backend type."""
    settings = scorer_settings(prepared, plan, index, teacher)
    return TEACHER_BACKENDS[settings.teacher.backend.type](settings, prepared)


def scorer_settings(prepared: PreparedRun, plan: RolePlacement, index: int,
                    teacher: PreparedTeacher | None = None) -> ScorerSettings:
    c = prepared.config
    return ScorerSettings(
        model_path=teacher.path if teacher else prepared.teacher_path,
        teacher=teacher.config if teacher else c.teacher,
        chunk_size=c.selection.stats_chunk_size,
        dtype=compute_dtype(prepared, plan.num_gpus > 0),
        num_threads=plan.num_threads,
        name=f"teacher-{index}",
        vocab_size=prepared.vocab_size,
    )


def selector_settings(prepared: PreparedRun, plan: RolePlacement, index: int) -> SelectorSettings:
    c = prepared.config
    return SelectorSettings(
        student_path=prepared.student_path,
        teacher_head_path=prepared.teacher_path if c.teacher.signal.type == "hidden" else None,
        selection=c.selection,
        micro_batch_size=c.teacher.micro_batch_size,
        seed=c.train.seed,
        dtype="float32",
        num_threads=plan.num_threads,
        name=f"selector-{index}",
        vocab_size=prepared.vocab_size,
        teacher_names=tuple(t.name for t in prepared.teachers) if c.teachers else (),
    )


def learner_settings(prepared: PreparedRun, plan: RolePlacement) -> LearnerSettings:
    c = prepared.config
    on_gpu = plan.num_gpus > 0
    backend = c.learner.backend if c.learner.backend != "auto" else ("nccl" if on_gpu else "gloo")
    return LearnerSettings(
        model_path=prepared.student_path,
        teacher_head_path=prepared.teacher_path if c.teacher.signal.type == "hidden" else None,
        world_size=c.learner.num_ranks,
        learner=c.learner,
        loss=c.loss,
        train=c.train,
        dtype=compute_dtype(prepared, on_gpu),
        group_backend=backend,
        num_threads=plan.num_threads,
        vocab_size=prepared.vocab_size,
        lora=LoraSettings.from_config(c.learner.lora),
    )
