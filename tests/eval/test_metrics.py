"""mean@n and pass@k against naive float64 references written independently here."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from tip_ray.eval.metrics import default_ks, mean_at_n, pass_at_k, pass_at_k_unbiased


def naive_pass_at_k(samples: list[bool], k: int) -> float:
    """Fraction of all k-subsets of the samples that contain a correct one (exact enumeration)."""
    subsets = list(itertools.combinations(samples, k))
    return float(np.mean([any(s) for s in subsets], dtype=np.float64))


def naive_stderr(values: list[float]) -> float:
    array = np.asarray(values, dtype=np.float64)
    return float(array.std(ddof=1) / np.sqrt(len(array)))


def random_problems(rng: random.Random) -> list[list[bool]]:
    num_problems = rng.randint(2, 12)
    n = rng.randint(1, 9)
    bias = rng.random()
    return [[rng.random() < bias for _ in range(n)] for _ in range(num_problems)]


@pytest.mark.parametrize("seed", range(40))
def test_pass_at_k_matches_enumeration_of_subsets(seed):
    rng = random.Random(seed)
    correct = random_problems(rng)
    n = len(correct[0])
    for k in range(1, n + 1):
        per_problem = [naive_pass_at_k(s, k) for s in correct]
        estimate = pass_at_k(correct, k)
        assert estimate.value == pytest.approx(float(np.mean(per_problem)), abs=1e-12)
        assert estimate.stderr == pytest.approx(naive_stderr(per_problem), abs=1e-12)
        assert estimate.num_problems == len(correct)


@pytest.mark.parametrize("seed", range(20))
def test_mean_at_n_is_the_average_fraction_correct(seed):
    rng = random.Random(1000 + seed)
    correct = random_problems(rng)
    per_problem = [float(np.mean(np.asarray(s, dtype=np.float64))) for s in correct]
    estimate = mean_at_n(correct)
    assert estimate.value == pytest.approx(float(np.mean(per_problem)), abs=1e-12)
    assert estimate.stderr == pytest.approx(naive_stderr(per_problem), abs=1e-12)


def test_pass_at_1_equals_mean_and_pass_at_n_is_any_correct():
    rng = random.Random(7)
    correct = random_problems(rng)
    n = len(correct[0])
    assert pass_at_k(correct, 1).value == pytest.approx(mean_at_n(correct).value, abs=1e-12)
    assert pass_at_k(correct, n).value == pytest.approx(float(np.mean([any(s) for s in correct])), abs=1e-12)


def test_large_n_stays_exact():
    # 1 - C(n-c, k)/C(n, k) with exact integers, for n far beyond enumeration.
    for n, c, k in [(200, 1, 1), (200, 3, 16), (1000, 10, 100), (64, 0, 8), (64, 64, 8)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k_unbiased(n, c, k) == pytest.approx(exact, rel=1e-12, abs=1e-15)


def test_single_problem_has_no_standard_error():
    estimate = mean_at_n([[True, False]])
    assert estimate.value == 0.5 and math.isnan(estimate.stderr)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pass_at_k([[True, False]], 3), "only 2 samples"),
        (lambda: pass_at_k_unbiased(4, 5, 1), "0 <= c <= n"),
        (lambda: pass_at_k_unbiased(4, 1, 0), "1 <= k <= n"),
        (lambda: mean_at_n([]), "no problems"),
        (lambda: mean_at_n([[True], []]), "problem 1 has no samples"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_default_ks():
    assert default_ks(1) == (1,)
    assert default_ks(8) == (1, 2, 4, 8)
    assert default_ks(10) == (1, 2, 4, 8, 10)
