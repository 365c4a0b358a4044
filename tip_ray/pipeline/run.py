"""One distillation run from a config: checks, Ray, the stages, the step loop, the run folder."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ray

from tip_ray.config.schema import PipelineConfig
from tip_ray.data.prompts import PromptSampler
from tip_ray.pipeline.controller import Controller, shutdown_actors, start_actors
from tip_ray.pipeline.metrics import MetricsLog, Progress, step_metrics
from tip_ray.pipeline.prepare import PreparedRun, prepare_run
from tip_ray.records import PromptBatch
from tip_ray.weights import WeightVersion

log = logging.getLogger("tip_ray")


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    steps: int
    final_loss: float
    tokens_trained: int  # selected tokens the learner trained on
    response_tokens: int  # tokens sampled
    peak_learner_mib: float
    wall_seconds: float
    evals: tuple[tuple[int, float], ...]  # (step, accuracy)
    final_model: Path | None  # Hugging Face folder of the trained student


def make_prompt_batch(sampler: PromptSampler, batch_id: int, size: int) -> PromptBatch:
    picked = sampler.next_batch(size)
    return PromptBatch(
        batch_id=batch_id,
        prompt_ids=tuple(p.ids for _, p in picked),
        answers=tuple(p.answer for _, p in picked),
        data_positions=tuple((pos.epoch, pos.index) for pos, _ in picked),
        prompt_rows=tuple(p.row for _, p in picked),
    )


def train_accuracy_fn(config: PipelineConfig) -> Callable[[str, str], bool] | None:
    """Cheap exact grader of training responses; only the built-in task has one."""
    if config.data.type == "demo":
        from tip_ray.demo.task import grade

        return grade
    return None


def batch_accuracy(rollouts, batch: PromptBatch, grade) -> float | None:
    if grade is None:
        return None
    correct = total = 0
    for shard in rollouts:
        offset = batch.prompt_rows.index(shard.prompt_rows[0]) if shard.prompt_rows else 0
        for text, pidx in zip(shard.response_texts, shard.prompt_index.tolist()):
            answer = batch.answers[offset + pidx]
            if answer is None:
                continue
            total += 1
            correct += bool(grade(text, answer))
    return correct / total if total else None


def init_ray(config: PipelineConfig, address: str | None) -> bool:
    """Start or join Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    target = address or config.cluster.address
    kwargs: dict[str, Any] = {"log_to_driver": True}
    if target == "local":
        kwargs.update(num_cpus=config.cluster.num_cpus or os.cpu_count(), include_dashboard=False)
        # Custom pool resources on the one local node, so pool-mapped runs also fit a laptop.
        if config.cluster.pools:
            kwargs["resources"] = {p.resource: 1000.0 for p in config.cluster.pools.values()}
    ray.init(address=target, **kwargs)
    return True


def run_pipeline(
    config: PipelineConfig,
    *,
    address: str | None = None,
    run_dir: str | None = None,
    prepared: PreparedRun | None = None,
    on_step: Callable[[dict], None] | None = None,
) -> RunSummary:
    prepared = prepared or prepare_run(config, run_dir)
    started_ray = init_ray(config, address)
    actors = None
    try:
        actors = start_actors(prepared, max_restarts=0)
        return _loop(prepared, actors, on_step)
    finally:
        shutdown_actors(actors)
        if started_ray:
            ray.shutdown()


def _loop(prepared: PreparedRun, actors, on_step) -> RunSummary:
    config = prepared.config
    controller = Controller(prepared, actors)
    controller.wait_ready()
    controller.setup_learners()
    sampler = PromptSampler(prepared.prompts, seed=config.train.seed, shuffle=config.data.shuffle)
    grade = train_accuracy_fn(config)
    metrics = MetricsLog(prepared.run_dir, tensorboard=config.logging.tensorboard)
    progress = Progress(config.train.steps, 0, config.logging.progress)
    signal_form = config.teacher.signal.type
    weights = WeightVersion(version=0)
    evaluator = None
    evals: list[tuple[int, float]] = []
    if config.eval.every_steps or config.eval.at_start:
        from tip_ray.pipeline.evaluation import RunEvaluator

        evaluator = RunEvaluator(config.eval, actors.rollouts[0], config.data.chat_template == "auto", config.train.seed)
        if evaluator.due(0, config.train.steps):
            evals.append(_evaluate(evaluator, weights, 0, prepared.run_dir, progress))
    total_steps = config.train.steps
    pending: dict[int, PromptBatch] = {}
    next_launch = 0
    start_wall = time.perf_counter()
    tokens_trained = response_tokens = 0
    peak = 0.0
    last_loss = float("nan")
    try:
        while next_launch < min(total_steps, controller.lag + 1):
            pending[next_launch] = make_prompt_batch(sampler, next_launch, config.rollout.prompts_per_step)
            controller.launch(pending[next_launch], weights)
            next_launch += 1
        for step in range(total_steps):
            step_start = time.perf_counter()
            item, rollouts, summary = controller.consume(step)
            result = controller.train(item.selected_ref)
            weights = controller.publish_weights(step + 1)
            if next_launch < total_steps:
                pending[next_launch] = make_prompt_batch(sampler, next_launch, config.rollout.prompts_per_step)
                controller.launch(pending[next_launch], weights)
                next_launch += 1
            batch = pending.pop(step)
            row = step_metrics(
                result,
                summary,
                learner_version=step,
                signal_form=signal_form,
                signal_exact=signal_form != "topk",
                rollout_seconds=max(r.seconds for r in rollouts),
                teacher_seconds=summary.teacher_seconds,
                step_seconds=time.perf_counter() - step_start,
                in_flight=len(controller.queue),
                accuracy=batch_accuracy(rollouts, batch, grade),
            )
            row["prompt_rows"] = list(batch.prompt_rows)
            if evaluator is not None and evaluator.due(step + 1, total_steps):
                evals.append(_evaluate(evaluator, weights, step + 1, prepared.run_dir, progress))
                row["eval_accuracy"] = evals[-1][1]
            metrics.write(row)
            progress.update(row)
            if on_step:
                on_step(row)
            tokens_trained += summary.num_selected
            response_tokens += summary.num_response_tokens
            peak = max(peak, result.peak_memory_mib)
            last_loss = result.loss
    finally:
        progress.close()
        metrics.close()
    final_model = None
    if weights.refs is not None:
        from tip_ray.learner.export import export_hf

        final_model = export_hf(ray.get(weights.refs[0]), prepared.student_path, prepared.run_dir / "final_model")
    return RunSummary(
        run_dir=prepared.run_dir,
        steps=total_steps,
        final_loss=last_loss,
        tokens_trained=tokens_trained,
        response_tokens=response_tokens,
        peak_learner_mib=peak,
        wall_seconds=time.perf_counter() - start_wall,
        evals=tuple(evals),
        final_model=final_model,
    )


def _evaluate(evaluator, weights: WeightVersion, step: int, run_dir: Path, progress: Progress) -> tuple[int, float]:
    import json

    report = evaluator.run(weights)
    row = {"step": step, "benchmark": evaluator.cfg.benchmark, **report.summary(),
           "generate_s": report.generate_s, "grade_s": report.grade_s}
    with (run_dir / "evals.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    progress.note_eval(report.mean.value)
    return step, report.mean.value
