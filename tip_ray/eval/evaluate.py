"""Evaluate a model on a benchmark: n samples per problem, graded, summarised as mean@n and pass@k.

The model enters only through ``generate_fn(prompts, n) -> n responses per prompt``, so any
rollout backend (Hugging Face ``generate``, vLLM, the pipeline's rollout workers) can be used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from tip_ray.eval.benchmarks import Problem
from tip_ray.eval.metrics import MetricEstimate, default_ks, mean_at_n, pass_at_k

GenerateFn = Callable[[Sequence[str], int], Sequence[Sequence[str]]]
"""``generate_fn(prompts, n)`` returns, for every prompt, a sequence of n response strings."""

Grader = Callable[[Sequence[str], Sequence[str]], Sequence[bool]]
"""``grader(responses, gold_answers)`` returns one bool per response (same length)."""


@dataclass(frozen=True)
class ProblemOutcome:
    """The sampled responses to one problem and whether each is correct."""

    problem_id: str
    prompt: str
    answer: str
    responses: tuple[str, ...]
    correct: tuple[bool, ...]


@dataclass(frozen=True)
class EvalReport:
    """Result of ``evaluate``: accuracy over problems with standard errors, and every sample."""

    n: int
    """Samples per problem."""
    mean: MetricEstimate
    """mean@n: average fraction of correct samples per problem."""
    pass_at: dict[int, MetricEstimate]
    """pass@k for each reported k (unbiased estimator)."""
    outcomes: tuple[ProblemOutcome, ...] = field(repr=False)
    """Per-problem responses and grades, in the order of the problems."""
    generate_s: float
    """Wall time spent generating."""
    grade_s: float
    """Wall time spent grading."""

    @property
    def num_problems(self) -> int:
        return len(self.outcomes)

    def summary(self) -> dict[str, float | int]:
        """Flat scalars for logging (JSONL/TensorBoard): mean@n, pass@k and their stderrs."""
        row: dict[str, float | int] = {
            "num_problems": self.num_problems,
            "n": self.n,
            f"mean@{self.n}": self.mean.value,
            f"mean@{self.n}_stderr": self.mean.stderr,
        }
        for k, estimate in sorted(self.pass_at.items()):
            row[f"pass@{k}"] = estimate.value
            row[f"pass@{k}_stderr"] = estimate.stderr
        return row


def evaluate(
    generate_fn: GenerateFn,
    problems: Sequence[Problem],
    n: int,
    grader: Grader,
    ks: Sequence[int] | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
) -> EvalReport:
    """Sample ``n`` responses per problem, grade them, and report mean@n and pass@k.

    ``ks`` defaults to 1, 2, 4, ... n. ``chunk_size`` problems are generated per call of
    ``generate_fn`` (all at once by default), which bounds memory and drives the progress bar.
    """
    if not problems:
        raise ValueError("evaluate: no problems given; check the benchmark source")
    if n < 1:
        raise ValueError(f"evaluate: n must be >= 1, got {n}")
    ks = tuple(ks) if ks is not None else default_ks(n)
    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise ValueError(f"evaluate: pass@k needs 1 <= k <= n={n}; got k={bad}")
    chunk = chunk_size or len(problems)

    responses: list[list[str]] = []
    start = time.perf_counter()
    bar = tqdm(total=len(problems), desc="generate", disable=not progress, unit="problem")
    for begin in range(0, len(problems), chunk):
        part = problems[begin:begin + chunk]
        generated = generate_fn([p.prompt for p in part], n)
        if len(generated) != len(part) or any(len(g) != n for g in generated):
            raise ValueError(
                f"evaluate: generate_fn returned {[len(g) for g in generated]} responses for "
                f"{len(part)} prompts; expected {n} per prompt"
            )
        responses.extend(list(g) for g in generated)
        bar.update(len(part))
    bar.close()
    generate_s = time.perf_counter() - start

    start = time.perf_counter()
    flat_responses = [r for group in responses for r in group]
    flat_golds = [p.answer for p in problems for _ in range(n)]
    flat_correct = list(grader(flat_responses, flat_golds))
    if len(flat_correct) != len(flat_responses):
        raise ValueError(f"evaluate: grader returned {len(flat_correct)} grades for {len(flat_responses)} responses")
    grade_s = time.perf_counter() - start

    outcomes = tuple(
        ProblemOutcome(
            problem_id=p.id,
            prompt=p.prompt,
            answer=p.answer,
            responses=tuple(responses[i]),
            correct=tuple(bool(c) for c in flat_correct[i * n:(i + 1) * n]),
        )
        for i, p in enumerate(problems)
    )
    correct = [o.correct for o in outcomes]
    return EvalReport(
        n=n,
        mean=mean_at_n(correct),
        pass_at={k: pass_at_k(correct, k) for k in ks},
        outcomes=outcomes,
        generate_s=generate_s,
        grade_s=grade_s,
    )
