"""Stage settings derived from the config: the same records feed Ray actors and the
in-process loop, so both run exactly the same stage code."""

from __future__ import annotations

from tip_ray.learner.lora import LoraSettings
from tip_ray.learner.settings import LearnerSettings
from tip_ray.pipeline.placement import RolePlacement
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.run_facts import compute_dtype, context_length
from tip_ray.pipeline.teacher_backends import TEACHER_BACKENDS
from tip_ray.rollout.worker import RolloutSettings
from tip_ray.select.selector import SelectorSettings
from tip_ray.teacher.scorer import ScorerSettings


def rollout_settings(prepared: PreparedRun, plan: RolePlacement, index: int) -> RolloutSettings:
    c = prepared.config
    backend = c.rollout.backend.model_dump()
    kind = backend.pop("type")
    return RolloutSettings(
        model_path=prepared.student_path,
        backend=kind,
        backend_options=backend,
        temperature=c.rollout.sampling.temperature,
        top_p=c.rollout.sampling.top_p,
        max_new_tokens=c.rollout.sampling.max_new_tokens,
        samples_per_prompt=c.rollout.samples_per_prompt,
        seed=c.train.seed,
        dtype=compute_dtype(prepared, plan.num_gpus > 0),
        num_threads=plan.num_threads,
        name=f"rollout-{index}",
        max_model_len=context_length(prepared),
    )


def teacher_stage(prepared: PreparedRun, plan: RolePlacement, index: int) -> tuple[type, tuple, dict]:
    """(class, args, kwargs) of one teacher scorer, by teacher.backend.type."""
    return TEACHER_BACKENDS[prepared.config.teacher.backend.type](scorer_settings(prepared, plan, index), prepared)


def scorer_settings(prepared: PreparedRun, plan: RolePlacement, index: int) -> ScorerSettings:
    c = prepared.config
    return ScorerSettings(
        model_path=prepared.teacher_path,
        form=c.teacher.signal.type,
        k=getattr(c.teacher.signal, "k", 0),
        micro_batch_size=c.teacher.micro_batch_size,
        chunk_size=c.selection.stats_chunk_size,
        dtype=compute_dtype(prepared, plan.num_gpus > 0),
        num_threads=plan.num_threads,
        name=f"teacher-{index}",
        vocab_size=prepared.vocab_size,
    )


def rule_params(prepared: PreparedRun) -> dict:
    rule = prepared.config.selection.rule.model_dump()
    rule.pop("type")
    rule.pop("ratio")
    if "cuts" in rule:
        cuts = rule.pop("cuts")
        rule.update(entropy_cut=cuts["entropy"], divergence_cut=cuts["divergence"], cut_mode=cuts["mode"],
                    entropy_clip_quantile=cuts["entropy_clip_quantile"])
    if rule.get("weights") is None:
        rule.pop("weights", None)
    if "keep" in rule:
        rule["keep"] = tuple(rule["keep"])
    return rule


def selector_settings(prepared: PreparedRun, plan: RolePlacement, index: int) -> SelectorSettings:
    c = prepared.config
    cuts = c.selection.metrics_cuts
    return SelectorSettings(
        student_path=prepared.student_path,
        teacher_head_path=prepared.teacher_path if c.teacher.signal.type == "hidden" else None,
        rule=c.selection.rule.type,
        ratio=c.selection.rule.ratio,
        rule_params=rule_params(prepared),
        chunk_size=c.selection.stats_chunk_size,
        metrics_cut_mode=cuts.mode,
        metrics_entropy_cut=cuts.entropy,
        metrics_divergence_cut=cuts.divergence,
        metrics_entropy_clip_quantile=cuts.entropy_clip_quantile,
        micro_batch_size=c.teacher.micro_batch_size,
        seed=c.train.seed,
        dtype="float32",
        num_threads=plan.num_threads,
        name=f"selector-{index}",
        vocab_size=prepared.vocab_size,
    )


def learner_settings(prepared: PreparedRun, plan: RolePlacement) -> LearnerSettings:
    c = prepared.config
    opt = c.learner.optimizer
    on_gpu = plan.num_gpus > 0
    backend = c.learner.backend if c.learner.backend != "auto" else ("nccl" if on_gpu else "gloo")
    return LearnerSettings(
        model_path=prepared.student_path,
        teacher_head_path=prepared.teacher_path if c.teacher.signal.type == "hidden" else None,
        world_size=c.learner.num_ranks,
        total_steps=c.train.steps,
        lr=opt.lr,
        weight_decay=opt.weight_decay,
        betas=tuple(opt.betas),
        eps=opt.eps,
        warmup_steps=opt.warmup_steps,
        schedule=opt.schedule,
        min_lr_ratio=opt.min_lr_ratio,
        grad_clip=opt.grad_clip,
        micro_batch_size=c.learner.micro_batch_size,
        loss=c.loss.type,
        beta=getattr(c.loss, "beta", 0.5),
        chunk_size=c.loss.chunk_size,
        dtype=compute_dtype(prepared, on_gpu),
        backend=backend,
        seed=c.train.seed,
        num_threads=plan.num_threads,
        vocab_size=prepared.vocab_size,
        lora=LoraSettings.from_config(c.learner.lora),
    )
