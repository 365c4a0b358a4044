import math

import pytest
import torch

from tip_ray.tip import LOSSES, global_token_mean, per_token_divergence, sampled_token_estimator
from tip_reference import divergence64, kl64, softmax64

KINDS = [("reverse_kl", 0.5), ("forward_kl", 0.5), ("jsd", 0.5), ("jsd", 0.1), ("jsd", 0.9), ("jsd", 0.0), ("jsd", 1.0)]


def _pair(n, v, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    teacher = torch.log_softmax(torch.randn(n, v, generator=g, dtype=torch.float64) * scale, dim=-1)
    return student, teacher


@pytest.mark.parametrize("kind,beta", KINDS)
@pytest.mark.parametrize("n,v", [(1, 2), (6, 17), (3, 32000)])
def test_values_and_gradients_match_float64_reference(kind, beta, n, v):
    student, teacher = _pair(n, v, seed=n * v + int(beta * 10))
    x = student.clone().requires_grad_(True)
    got = per_token_divergence(x, teacher, kind, beta)
    assert got.dtype == torch.float64
    y = student.clone().requires_grad_(True)
    ref = divergence64(softmax64(y), torch.exp(teacher), kind, beta)
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)
    weights = torch.linspace(0.5, 2.0, n, dtype=torch.float64)
    (g_got,) = torch.autograd.grad((got * weights).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), y)
    rel = (g_got - g_ref).norm() / g_ref.norm().clamp(min=1e-30)
    assert rel < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_inputs_accumulate_in_float32(dtype):
    student, teacher = _pair(4, 500, seed=2)
    s, t = student.to(dtype), teacher.to(dtype)
    got = per_token_divergence(s, t, "reverse_kl")
    assert got.dtype == torch.float32
    p = softmax64(s.double())
    q = softmax64(t.double())  # the teacher values given, renormalised
    torch.testing.assert_close(got.double(), kl64(p, q), rtol=1e-4, atol=1e-5)


def test_jsd_is_symmetric_at_half_and_bounded():
    student, teacher = _pair(5, 40, seed=4, scale=6.0)
    jsd = per_token_divergence(student, teacher, "jsd", 0.5)
    swapped = per_token_divergence(teacher, torch.log_softmax(student, dim=-1), "jsd", 0.5)
    torch.testing.assert_close(jsd, swapped)
    assert bool((jsd <= math.log(2) + 1e-12).all()) and bool((jsd >= 0).all())


def test_sampled_estimators_are_unbiased_for_reverse_kl():
    student, teacher = _pair(3, 30, seed=5)
    p = softmax64(student)
    log_p = torch.log(p)
    for kind in ("k1", "k3"):
        per_sample = sampled_token_estimator(log_p.reshape(-1), teacher.reshape(-1), kind).reshape(3, 30)
        expectation = (p * per_sample).sum(dim=-1)  # E_{y ~ P_S}[k(y)], exactly
        torch.testing.assert_close(expectation, kl64(p, torch.exp(teacher)))
    k3 = sampled_token_estimator(log_p.reshape(-1), teacher.reshape(-1), "k3")
    assert bool((k3 >= 0).all())
    ls, lt = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -0.5])
    torch.testing.assert_close(sampled_token_estimator(ls, lt, "k1"), torch.tensor([0.5, -1.5]))
    r = torch.exp(lt - ls)
    torch.testing.assert_close(sampled_token_estimator(ls, lt, "k3"), r - 1 - torch.log(r))


def test_global_token_mean_is_split_invariant():
    g = torch.Generator().manual_seed(6)
    losses, weights = torch.rand(10, generator=g), torch.rand(10, generator=g)
    whole = global_token_mean(losses, weights, 10)
    assert whole.item() == pytest.approx(float((losses * weights).sum() / 10))
    parts = global_token_mean(losses[:3], weights[:3], 10) + global_token_mean(losses[3:], weights[3:], 10)
    assert parts.item() == pytest.approx(whole.item())
    empty = global_token_mean(torch.zeros(0), torch.zeros(0), 0)
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="positive number of selected tokens"):
        global_token_mean(losses, weights, 0)
    with pytest.raises(ValueError, match="same 1-D shape"):
        global_token_mean(losses, weights[:4], 10)


def test_bad_input_errors():
    student, teacher = _pair(2, 7, seed=1)
    with pytest.raises(ValueError, match="valid losses: reverse_kl, forward_kl, jsd, k1, k3"):
        per_token_divergence(student, teacher, "kl")
    with pytest.raises(ValueError, match="sampled-token estimator"):
        per_token_divergence(student, teacher, "k1")
    with pytest.raises(ValueError, match="student logits have 7 entries, teacher log-probs have 6"):
        per_token_divergence(student, teacher[:, :6], "reverse_kl")
    with pytest.raises(ValueError, match="beta must be in \\[0, 1\\]"):
        per_token_divergence(student, teacher, "jsd", 1.5)
    with pytest.raises(ValueError, match="only k1 or k3"):
        sampled_token_estimator(torch.zeros(2), torch.zeros(2), "jsd")
    assert LOSSES == ("reverse_kl", "forward_kl", "jsd", "k1", "k3")
