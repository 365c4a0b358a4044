import math

import pytest
import torch

from tip_ray.tip import (
    FullLogProbs,
    TeacherHidden,
    approximation_error,
    topk_from_logprobs,
    token_stats,
    token_stats_from_hidden,
)
from tip_reference import buckets64, entropy64, kl64, softmax64, teacher_buckets64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference(student_logits, teacher_logits):
    p, q = softmax64(student_logits), softmax64(teacher_logits)
    return entropy64(p) / math.log(p.shape[1]), kl64(p, q), kl64(q, p)


def _close(actual, expected, rtol=2e-5, atol=2e-6):
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), expected, rtol=rtol, atol=atol)


SHAPES = [(1, 2, 512), (7, 13, 3), (33, 50, 8), (3, 32000, 2)]


@pytest.mark.parametrize("n,v,chunk", SHAPES)
def test_full_signal_matches_reference(n, v, chunk):
    g = _gen(n * v)
    student = torch.randn(n, v, generator=g) * 3
    teacher = torch.log_softmax(torch.randn(n, v, generator=g) * 3, dim=-1)
    stats = token_stats(student, FullLogProbs(teacher), chunk_size=chunk)
    h, rev, fwd = _reference(student, teacher)
    _close(stats.entropy, h)
    _close(stats.reverse_kl, rev)
    _close(stats.forward_kl, fwd)
    assert not stats.approximate
    assert bool(((stats.entropy >= 0) & (stats.entropy <= 1)).all())


@pytest.mark.parametrize("n,v,chunk", SHAPES)
def test_hidden_signals_match_reference(n, v, chunk):
    g = _gen(n + v)
    d, d_t = 6, 9
    student_hidden, student_head = torch.randn(n, d, generator=g), torch.randn(v, d, generator=g)
    teacher_hidden, teacher_head = torch.randn(n, d_t, generator=g), torch.randn(v, d_t, generator=g)
    h, rev, fwd = _reference(student_hidden.double() @ student_head.double().T, teacher_hidden.double() @ teacher_head.double().T)
    via_hidden = token_stats_from_hidden(
        student_hidden, student_head, TeacherHidden(teacher_hidden), teacher_head=teacher_head, chunk_size=chunk
    )
    via_logits = token_stats(student_hidden @ student_head.T, TeacherHidden(teacher_hidden), teacher_head=teacher_head)
    for stats in (via_hidden, via_logits):
        _close(stats.entropy, h, rtol=1e-4, atol=1e-5)
        _close(stats.reverse_kl, rev, rtol=1e-4, atol=1e-5)
        _close(stats.forward_kl, fwd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,v,k", [(1, 5, 1), (9, 40, 6), (4, 32000, 16), (3, 6, 6)])
def test_topk_signal_is_the_bucket_distribution(n, v, k):
    g = _gen(k * v)
    student = torch.randn(n, v, generator=g) * 2
    teacher = torch.log_softmax(torch.randn(n, v, generator=g) * 2, dim=-1)
    sig = topk_from_logprobs(teacher, k)
    stats = token_stats(student, sig, chunk_size=2)
    p = softmax64(student)
    ps, qs = buckets64(p, sig.indices), teacher_buckets64(sig.logprobs, sig.tail_logprob)
    assert stats.approximate
    _close(stats.entropy, entropy64(p) / math.log(v))  # the entropy is exact
    _close(stats.reverse_kl, kl64(ps, qs), atol=1e-5)
    _close(stats.forward_kl, kl64(qs, ps), atol=1e-5)
    exact = token_stats(student, FullLogProbs(teacher))
    assert bool((stats.reverse_kl <= exact.reverse_kl + 1e-5).all())  # coarser buckets never add divergence


@pytest.mark.parametrize("source", [torch.float64, torch.bfloat16])
def test_low_and_high_precision_inputs(source):
    g = _gen(5)
    student = (torch.randn(6, 300, generator=g) * 4).to(source)
    teacher = torch.log_softmax(torch.randn(6, 300, generator=g) * 4, dim=-1).to(source)
    stats = token_stats(student, FullLogProbs(teacher), chunk_size=4)
    # Reference on exactly the values given (bf16 values upcast), teacher renormalised.
    h, rev, fwd = _reference(student, teacher)
    tol = dict(rtol=1e-6, atol=1e-7) if source == torch.float64 else dict(rtol=2e-5, atol=2e-6)
    _close(stats.entropy, h, **tol)
    _close(stats.reverse_kl, rev, **tol)
    _close(stats.forward_kl, fwd, **tol)


def test_chunk_size_does_not_change_results_and_empty_input():
    g = _gen(9)
    student, teacher = torch.randn(20, 30, generator=g), torch.log_softmax(torch.randn(20, 30, generator=g), dim=-1)
    a = token_stats(student, FullLogProbs(teacher), chunk_size=1)
    b = token_stats(student, FullLogProbs(teacher), chunk_size=512)
    for name in ("entropy", "reverse_kl", "forward_kl"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-7)
    empty = token_stats(torch.zeros(0, 30), FullLogProbs(torch.zeros(0, 30)))
    assert empty.entropy.shape == (0,) and empty.reverse_kl.shape == (0,)


def test_identical_distributions_give_zero_divergence_and_uniform_gives_entropy_one():
    logits = torch.zeros(3, 64)
    stats = token_stats(logits, FullLogProbs(torch.log_softmax(logits, dim=-1)))
    torch.testing.assert_close(stats.entropy, torch.ones(3))
    torch.testing.assert_close(stats.reverse_kl, torch.zeros(3))
    torch.testing.assert_close(stats.forward_kl, torch.zeros(3))


def test_approximation_error_reports_bucket_error():
    g = _gen(3)
    student = torch.randn(10, 80, generator=g) * 2
    teacher = torch.log_softmax(torch.randn(10, 80, generator=g) * 2, dim=-1)
    report = approximation_error(student, teacher, k=8)
    p, q = softmax64(student), softmax64(teacher)
    sig = topk_from_logprobs(teacher, 8)
    ps, qs = buckets64(p, sig.indices), teacher_buckets64(sig.logprobs, sig.tail_logprob)
    rev_err = (kl64(p, q) - kl64(ps, qs)).abs()
    fwd_err = (kl64(q, p) - kl64(qs, ps)).abs()
    assert report["k"] == 8
    assert report["reverse_kl_max_abs"] == pytest.approx(float(rev_err.max()), abs=1e-4)
    assert report["reverse_kl_mean_abs"] == pytest.approx(float(rev_err.mean()), abs=1e-4)
    assert report["forward_kl_max_abs"] == pytest.approx(float(fwd_err.max()), abs=1e-4)
    assert report["forward_kl_mean_abs"] == pytest.approx(float(fwd_err.mean()), abs=1e-4)
    assert report["reverse_kl_max_abs"] > 1e-3  # k = 8 of 80 really is approximate here
    full_k = approximation_error(student, teacher, k=80)
    assert full_k["reverse_kl_max_abs"] < 1e-4 and full_k["forward_kl_max_abs"] < 1e-4


def test_vocabulary_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match=r"student has 50.*teacher log-probs have 49"):
        token_stats(torch.zeros(2, 50), FullLogProbs(torch.zeros(2, 49)))
    with pytest.raises(ValueError, match=r"student has 50.*teacher head has 51"):
        token_stats(torch.zeros(2, 50), TeacherHidden(torch.zeros(2, 4)), teacher_head=torch.zeros(51, 4))
    with pytest.raises(ValueError, match=r"id 60 is outside the student vocabulary of size 50"):
        sig = topk_from_logprobs(torch.zeros(2, 61), 3)
        sig = type(sig)(indices=torch.tensor([[0, 1, 60], [0, 1, 2]]), logprobs=sig.logprobs, tail_logprob=sig.tail_logprob)
        token_stats(torch.zeros(2, 50), sig)
    with pytest.raises(ValueError, match="needs teacher_head"):
        token_stats(torch.zeros(2, 50), TeacherHidden(torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="3 rows but there are 2"):
        token_stats(torch.zeros(2, 50), FullLogProbs(torch.zeros(3, 50)))
    with pytest.raises(ValueError, match="hidden size 5 does not match student_head"):
        token_stats_from_hidden(torch.zeros(2, 5), torch.zeros(50, 4), FullLogProbs(torch.zeros(2, 50)))
    with pytest.raises(ValueError, match="chunk_size"):
        token_stats(torch.zeros(2, 50), FullLogProbs(torch.zeros(2, 50)), chunk_size=0)


def test_masked_vocabulary_entries_give_finite_statistics():
    """-inf logits / log-probs (a masked vocabulary entry) mean probability 0, not NaN."""
    g = _gen(12)
    student = torch.randn(4, 20, generator=g)
    teacher = torch.randn(4, 20, generator=g)
    student[:, :3] = float("-inf")
    teacher[:, :3] = float("-inf")
    stats = token_stats(student, FullLogProbs(torch.log_softmax(teacher, dim=-1)))
    p, q = softmax64(student[:, 3:]), softmax64(teacher[:, 3:])
    _close(stats.entropy, entropy64(p) / math.log(20))
    _close(stats.reverse_kl, kl64(p, q))
    _close(stats.forward_kl, kl64(q, p))
