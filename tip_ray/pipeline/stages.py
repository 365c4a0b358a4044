"""Stage settings derived from the config: the same records feed Ray actors and the
in-process loop, so both run exactly the same stage code."""

from __future__ import annotations

from tip_ray.learner.lora import LoraSettings
from tip_ray.learner.rank import LearnerSettings
from tip_ray.pipeline.placement import RolePlacement
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.rollout.worker import RolloutSettings
from tip_ray.select.selector import SelectorSettings
from tip_ray.teacher.scorer import ScorerSettings


def compute_dtype(prepared: PreparedRun, on_gpu: bool) -> str:
    dtype = prepared.config.models.dtype
    if dtype == "auto":
        return "bfloat16" if on_gpu else "float32"
    return dtype


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
        environment=c.rollout.environment,
    )


def context_length(prepared: PreparedRun) -> int:
    """Prompt + response budget of the run, within the student's position window."""
    from tip_ray.models.loading import read_model_config

    c = prepared.config
    response = c.rollout.sampling.max_new_tokens
    if c.rollout.environment.type == "tools":  # a trajectory's turns and tool messages together
        response = max(response, c.rollout.environment.max_total_tokens)
    budget = c.data.max_prompt_tokens + response
    config = read_model_config(prepared.student_path)
    window = config.get("max_position_embeddings") or config.get("text_config", {}).get("max_position_embeddings")
    return min(budget, int(window)) if window else budget


def teacher_stage(prepared: PreparedRun, plan: RolePlacement, index: int) -> tuple[type, tuple, dict]:
    """(class, args, kwargs) of one teacher scorer: Hugging Face, or vLLM (in-process or an
    external server) for top-k signals."""
    settings = scorer_settings(prepared, plan, index)
    if prepared.config.teacher.backend == "vllm":
        from tip_ray.teacher.vllm_scorer import VLLMTeacherScorer

        return VLLMTeacherScorer, (settings,), {"max_model_len": context_length(prepared)}
    if prepared.config.teacher.backend == "server":
        from tip_ray.teacher.server_scorer import ServerTeacherScorer

        server = prepared.config.teacher.server.model_dump()
        return ServerTeacherScorer, (settings,), {"server": server, "tokenizer_path": prepared.tokenizer_path}
    from tip_ray.teacher.scorer import TeacherScorer

    return TeacherScorer, (settings,), {}


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
        beta=c.loss.beta,
        chunk_size=c.loss.chunk_size,
        dtype=compute_dtype(prepared, on_gpu),
        backend=backend,
        seed=c.train.seed,
        num_threads=plan.num_threads,
        vocab_size=prepared.vocab_size,
        lora=LoraSettings.from_config(c.learner.lora),
    )
