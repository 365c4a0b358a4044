"""mean@n and pass@k over sampled answers, with standard errors over problems.

``correct`` is one sequence of booleans per problem (one per sampled response). Every metric is
a mean over problems of a per-problem estimate; its standard error is the sample standard
deviation of those estimates (ddof=1) divided by sqrt(number of problems), i.e. the error from
the finite problem set (NaN when there is a single problem).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricEstimate:
    """A metric averaged over problems, with its standard error over problems."""

    value: float
    """Mean over problems of the per-problem estimate, in [0, 1]."""
    stderr: float
    """Standard error of ``value`` over problems (NaN for a single problem)."""
    num_problems: int
    """How many problems the mean is over."""


def pass_at_k_unbiased(n: int, c: int, k: int) -> float:
    """Probability that at least one of k of the n samples (c of them correct) is correct.

    The unbiased estimator 1 - C(n-c, k) / C(n, k), computed as a product so that it stays
    exact in floating point for large n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k_unbiased: need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k_unbiased: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def _mean_and_stderr(values: Sequence[float]) -> MetricEstimate:
    count = len(values)
    if count == 0:
        raise ValueError("metrics: no problems to average over")
    mean = math.fsum(values) / count
    if count == 1:
        return MetricEstimate(value=mean, stderr=math.nan, num_problems=1)
    variance = math.fsum((v - mean) ** 2 for v in values) / (count - 1)
    return MetricEstimate(value=mean, stderr=math.sqrt(variance / count), num_problems=count)


def _check_samples(correct: Sequence[Sequence[bool]], name: str) -> None:
    for index, samples in enumerate(correct):
        if len(samples) == 0:
            raise ValueError(f"{name}: problem {index} has no samples")


def mean_at_n(correct: Sequence[Sequence[bool]]) -> MetricEstimate:
    """Average accuracy: per problem the fraction of its samples that are correct."""
    _check_samples(correct, "mean_at_n")
    return _mean_and_stderr([sum(map(bool, s)) / len(s) for s in correct])


def pass_at_k(correct: Sequence[Sequence[bool]], k: int) -> MetricEstimate:
    """pass@k with the unbiased estimator per problem; every problem needs at least k samples."""
    _check_samples(correct, "pass_at_k")
    short = [i for i, s in enumerate(correct) if len(s) < k]
    if short:
        raise ValueError(
            f"pass_at_k: k={k} but problem {short[0]} has only {len(correct[short[0]])} samples; "
            "sample n >= k responses per problem"
        )
    return _mean_and_stderr([pass_at_k_unbiased(len(s), sum(map(bool, s)), k) for s in correct])


def default_ks(n: int) -> tuple[int, ...]:
    """The k values usually reported for n samples: 1, 2, 4, ... up to n, plus n itself."""
    if n < 1:
        raise ValueError(f"default_ks: n must be >= 1, got {n}")
    ks = []
    k = 1
    while k < n:
        ks.append(k)
        k *= 2
    ks.append(n)
    return tuple(ks)
