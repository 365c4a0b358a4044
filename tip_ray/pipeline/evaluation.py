"""Evaluation inside a run: the current student, through the run's own rollout backend, on the
configured benchmark; mean@n and pass@k with standard errors, in a thread of its own so that a
hung generation or grader costs the evaluation, never the run."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from tip_ray.config.evaluation import EvalConfig
from tip_ray.pipeline.metrics import Progress
from tip_ray.weights import WeightVersion

log = logging.getLogger("tip_ray")


def load_eval_problems(cfg: EvalConfig):
    from tip_ray.eval.benchmarks import load_benchmark

    return load_benchmark(cfg.benchmark, path=cfg.path, hf_dataset=cfg.hf_dataset, limit=cfg.num_problems)


def grader_for(cfg: EvalConfig) -> Callable[[Sequence[str], Sequence[str]], Sequence[bool]]:
    from tip_ray.eval.benchmarks import benchmark_info

    task = benchmark_info(cfg.benchmark).task
    if task is not None:
        from tip_ray.tasks.registry import get_task

        return get_task(task).grade_all
    from tip_ray.eval.grading import MathGrader

    return MathGrader(timeout_s=cfg.grade_timeout_s)


class RunEvaluator:
    """Evaluates with a rollout worker (a Ray actor handle, or a plain RolloutWorker)."""

    def __init__(self, cfg: EvalConfig, worker: Any, use_chat_template: bool, seed: int, remote: bool = True):
        self.cfg = cfg
        self.worker = worker
        self.use_chat_template = use_chat_template
        self.seed = seed
        self.remote = remote
        self.problems = load_eval_problems(cfg)
        self.grader = grader_for(cfg)

    def due(self, step: int, total: int) -> bool:
        if step == 0:
            return self.cfg.at_start
        every = self.cfg.every_steps
        return bool(every) and (step % every == 0 or step == total)

    def run(self, weights: WeightVersion):
        from tip_ray.eval.evaluate import evaluate

        def generate(prompts: list[str], n: int) -> list[list[str]]:
            kwargs = dict(n=n, temperature=self.cfg.temperature, max_new_tokens=self.cfg.max_new_tokens,
                          seed=self.seed, weights=weights, use_chat_template=self.use_chat_template)
            if self.remote:
                import ray

                return ray.get(self.worker.complete.remote(prompts, **kwargs))
            return self.worker.complete(prompts, **kwargs)

        return evaluate(generate, self.problems, self.cfg.samples_per_problem, self.grader)


def evaluate_bounded(evaluator: RunEvaluator, weights: WeightVersion, step: int, *, stage_timeout_s: float,
                     run_dir: Path, progress: Progress) -> float | None:
    """Evaluate, bounded in time: a generation or a grader that hangs costs the evaluation,
    never the run (the row records the timeout and training goes on). Appends the outcome to
    run_dir/evals.jsonl and returns the accuracy (None when it timed out)."""
    cfg = evaluator.cfg
    answers = len(evaluator.problems) * cfg.samples_per_problem
    limit = stage_timeout_s + cfg.grade_timeout_s * answers
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["report"] = evaluator.run(weights)
        except BaseException as exc:  # reported below, in the driver's thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name=f"eval-step-{step}", daemon=True)
    thread.start()
    thread.join(limit)
    row: dict[str, Any] = {"step": step, "benchmark": cfg.benchmark}
    accuracy = None
    if thread.is_alive():
        row["error"] = f"timed out after {limit:.0f} s"
        log.warning("evaluation at step %d did not finish within %.0f s (train.stage_timeout_s + "
                    "eval.grade_timeout_s per answer); training goes on without it", step, limit)
    elif "error" in outcome:
        raise outcome["error"]
    else:
        report = outcome["report"]
        accuracy = report.mean.value
        row.update({**report.summary(), "accuracy": accuracy, "generate_s": report.generate_s,
                    "grade_s": report.grade_s})
        progress.note_eval(accuracy)
    with (run_dir / "evals.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    return accuracy
