"""Evaluation inside a run: the current student, through the run's own rollout backend, on the
configured benchmark; mean@n and pass@k with standard errors."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from tip_ray.config.schema import EvalConfig
from tip_ray.weights import WeightVersion


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
