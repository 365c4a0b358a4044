import gc
import weakref

import pytest
import torch

from tip_ray.tip import (
    FullLogProbs,
    TeacherHidden,
    select_tokens,
    selected_weights,
    selection_positions,
    selective_distill_loss,
    topk_from_logprobs,
)
from tip_reference import bucket_probs_t, divergence64, python_bucket_of, softmax64


class Case:
    """Random student/teacher inputs for B x T positions, with a TIP selection."""

    def __init__(self, b, t, d, v, seed, dtype=torch.float64, d_teacher=5, ratio=0.5):
        g = torch.Generator().manual_seed(seed)
        self.b, self.t, self.d, self.v = b, t, d, v
        self.hidden = (torch.randn(b, t, d, generator=g, dtype=torch.float64) * 1.5).to(dtype)
        self.head = (torch.randn(v, d, generator=g, dtype=torch.float64) * 0.8).to(dtype)
        self.teacher_hidden = torch.randn(b * t, d_teacher, generator=g, dtype=torch.float64).to(dtype)
        self.teacher_head = torch.randn(v, d_teacher, generator=g, dtype=torch.float64).to(dtype)
        self.teacher_logprobs = torch.log_softmax(self.teacher_hidden.double() @ self.teacher_head.double().T, dim=-1)
        self.sampled = torch.randint(0, v, (b * t,), generator=g)
        mask = torch.ones(b, t, dtype=torch.bool)
        if b > 1:
            mask[-1, t // 2 :] = False  # a shorter rollout
        stats = {name: torch.rand(b, t, generator=g) for name in ("entropy", "reverse_kl", "forward_kl")}
        self.selection = select_tokens("soft_or", response_mask=mask, ratio=ratio, **stats)
        self.positions = selection_positions(self.selection)
        self.flat = self.positions[:, 0] * t + self.positions[:, 1]
        # non-uniform weights, so that weighting is tested too
        self.weights = selected_weights(self.selection) * torch.linspace(0.5, 1.5, len(self.flat))
        self.count = float(len(self.flat)) + 3.0  # other ranks hold 3 more tokens

    def signal(self, form, k=4):
        if form == "full":
            return FullLogProbs(self.teacher_logprobs[self.flat].to(self.hidden.dtype)), None
        if form == "hidden":
            return TeacherHidden(self.teacher_hidden[self.flat]), self.teacher_head
        return topk_from_logprobs(self.teacher_logprobs[self.flat], k), None


def naive_loss(case: Case, hidden, head, form, kind, beta, k=4):
    """The straightforward loss: logits at ALL positions, per-token loss everywhere, masked to the selection.

    Returns (value, surrogate): equal for divergences; for k1/k3 the surrogate carries the
    policy-gradient gradient sum(w * sg(k) * grad log p(y)) / count.
    """
    logits = hidden.double().reshape(-1, case.d) @ head.double().T  # [B*T, V]
    p_all = softmax64(logits)
    q_all = torch.exp(case.teacher_logprobs)
    weight_all = torch.zeros(case.b * case.t, dtype=torch.float64)
    weight_all[case.flat] = case.weights.double()
    if form == "topk":
        sig = topk_from_logprobs(case.teacher_logprobs[case.flat], k)
        indices_all = torch.zeros(case.b * case.t, k, dtype=torch.int64)
        indices_all[case.flat] = sig.indices
        teacher_buckets = torch.zeros(case.b * case.t, k + 1, dtype=torch.float64)
        tb = torch.cat([torch.exp(sig.logprobs.double()), torch.exp(sig.tail_logprob.double()).unsqueeze(1)], dim=1)
        teacher_buckets[case.flat] = tb / tb.sum(dim=-1, keepdim=True)
        teacher_buckets[teacher_buckets.sum(dim=-1) == 0] = 1.0 / (k + 1)  # unselected rows: any valid distribution
        p_all, q_all = bucket_probs_t(p_all, indices_all), teacher_buckets
        token_all = torch.zeros(case.b * case.t, dtype=torch.int64)
        token_all[case.flat] = python_bucket_of(sig.indices, case.sampled[case.flat])
    else:
        token_all = case.sampled
    if kind in ("k1", "k3"):
        log_ps = torch.log(p_all.gather(1, token_all.unsqueeze(1)).squeeze(1))
        log_pt = torch.log(q_all.gather(1, token_all.unsqueeze(1)).squeeze(1))
        log_r = log_pt - log_ps
        estimate = -log_r if kind == "k1" else torch.exp(log_r) - 1 - log_r
        value = (weight_all * estimate).sum() / case.count
        surrogate = (weight_all * estimate.detach() * log_ps).sum() / case.count
        return value, surrogate
    per_token = divergence64(p_all, q_all, kind, beta)
    value = (weight_all * per_token).sum() / case.count
    return value, value


def _run(case, form, kind, beta, chunk_size, flat_positions=False, k=4):
    hidden = case.hidden.clone().requires_grad_(True)
    head = case.head.clone().requires_grad_(True)
    sig, teacher_head = case.signal(form, k)
    loss = selective_distill_loss(
        hidden, head, case.flat if flat_positions else case.positions, sig, case.weights,
        loss=kind, beta=beta, global_token_count=case.count, teacher_head=teacher_head,
        chunk_size=chunk_size, sampled_tokens=case.sampled[case.flat],
    )
    grad_hidden, grad_head = torch.autograd.grad(loss, (hidden, head))
    return loss, grad_hidden, grad_head


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


LOSS_KINDS = [("reverse_kl", 0.5), ("forward_kl", 1.0), ("jsd", 0.3), ("jsd", 0.0), ("jsd", 1.0), ("k1", 0.5), ("k3", 0.5)]


@pytest.mark.parametrize("form", ["full", "hidden", "topk"])
@pytest.mark.parametrize("kind,beta", LOSS_KINDS)
@pytest.mark.parametrize("shape,chunk", [((2, 5, 4, 11), 2), ((3, 9, 6, 40), 512), ((1, 1, 3, 7), 1)])
def test_selective_step_equals_naive_masked_loss_float64(form, kind, beta, shape, chunk):
    case = Case(*shape, seed=sum(shape) + len(kind))
    loss, grad_hidden, grad_head = _run(case, form, kind, beta, chunk)
    hidden = case.hidden.clone().requires_grad_(True)
    head = case.head.clone().requires_grad_(True)
    value, surrogate = naive_loss(case, hidden, head, form, kind, beta)
    ref_hidden, ref_head = torch.autograd.grad(surrogate, (hidden, head))
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(value.item(), rel=1e-9, abs=1e-12)
    assert _rel(grad_hidden, ref_hidden) < 1e-5
    assert _rel(grad_head, ref_head) < 1e-5
    unselected = torch.ones(case.b * case.t, dtype=torch.bool)
    unselected[case.flat] = False
    if unselected.any():
        assert grad_hidden.reshape(-1, case.d)[unselected].abs().max().item() == 0.0


def test_large_vocabulary_and_flat_positions():
    case = Case(2, 3, 4, 32000, seed=1, ratio=0.7)
    for form in ("hidden", "full"):
        loss, gh, gw = _run(case, form, "reverse_kl", 0.5, chunk_size=2)
        loss_flat, gh_flat, gw_flat = _run(case, form, "reverse_kl", 0.5, chunk_size=2, flat_positions=True)
        assert torch.equal(gh, gh_flat) and torch.equal(gw, gw_flat) and loss.item() == loss_flat.item()
        hidden = case.hidden.clone().requires_grad_(True)
        head = case.head.clone().requires_grad_(True)
        value, _ = naive_loss(case, hidden, head, form, "reverse_kl", 0.5)
        ref_h, ref_w = torch.autograd.grad(value, (hidden, head))
        assert loss.item() == pytest.approx(value.item(), rel=1e-9)
        assert _rel(gh, ref_h) < 1e-5 and _rel(gw, ref_w) < 1e-5


@pytest.mark.parametrize("form", ["full", "hidden"])
def test_bf16_inputs_give_bf16_grads_close_to_reference(form):
    case = Case(2, 6, 8, 300, seed=3, dtype=torch.bfloat16)
    loss, gh, gw = _run(case, form, "reverse_kl", 0.5, chunk_size=3)
    assert loss.dtype == torch.float32 and gh.dtype == torch.bfloat16 and gw.dtype == torch.bfloat16
    hidden = case.hidden.double().requires_grad_(True)  # the same bf16 values, in float64
    head = case.head.double().requires_grad_(True)
    if form == "full":  # the reference must see the bf16-rounded teacher log-probs the loss saw
        case.teacher_logprobs = torch.log_softmax(case.teacher_logprobs.to(torch.bfloat16).double(), dim=-1)
    value, _ = naive_loss(case, hidden, head, form, "reverse_kl", 0.5)
    ref_h, ref_w = torch.autograd.grad(value, (hidden, head))
    assert loss.item() == pytest.approx(value.item(), rel=1e-4)
    assert _rel(gh, ref_h) < 1e-2 and _rel(gw, ref_w) < 1e-2  # bf16 output rounding only


def test_autocast_region_does_not_lower_precision():
    case = Case(2, 5, 4, 50, seed=8, dtype=torch.float32)
    loss, gh, gw = _run(case, "hidden", "reverse_kl", 0.5, chunk_size=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_ac, gh_ac, gw_ac = _run(case, "hidden", "reverse_kl", 0.5, chunk_size=4)
    assert loss_ac.dtype == torch.float32 and gh_ac.dtype == torch.float32
    assert loss_ac.item() == loss.item() and torch.equal(gh, gh_ac) and torch.equal(gw, gw_ac)


def test_tied_head_gets_both_gradients():
    torch.manual_seed(0)
    v, d, b, t = 23, 6, 2, 7
    embedding = torch.nn.Embedding(v, d).double()
    mix = torch.nn.Linear(d, d).double()
    tokens = torch.randint(0, v, (b, t))
    teacher_lp = torch.log_softmax(torch.randn(b * t, v, dtype=torch.float64), dim=-1)
    positions = torch.tensor([[0, 1], [0, 4], [1, 0], [1, 6]])
    flat = positions[:, 0] * t + positions[:, 1]
    weights = torch.ones(4, dtype=torch.float64)

    hidden = torch.tanh(mix(embedding(tokens)))
    loss = selective_distill_loss(hidden, embedding.weight, positions, FullLogProbs(teacher_lp[flat]), weights, global_token_count=4)
    loss.backward()
    got = embedding.weight.grad.clone()
    got_mix = mix.weight.grad.clone()
    embedding.weight.grad = None
    mix.weight.grad = None

    hidden = torch.tanh(mix(embedding(tokens)))
    logits = hidden.reshape(-1, d) @ embedding.weight.T
    p = softmax64(logits)[flat]
    ref = divergence64(p, torch.exp(teacher_lp[flat]), "reverse_kl").sum() / 4
    ref.backward()
    assert _rel(got, embedding.weight.grad) < 1e-5
    assert _rel(got_mix, mix.weight.grad) < 1e-5


def test_no_vocabulary_sized_tensor_is_saved_for_backward():
    """What the autograd graph keeps once the loss exists: no [*, V] tensor."""
    case = Case(3, 8, 4, 97, seed=2, dtype=torch.float32)
    saved = []

    def pack(tensor):
        saved.append((tuple(tensor.shape), weakref.ref(tensor)))
        return tensor

    hidden = case.hidden.clone().requires_grad_(True)
    head = case.head.clone().requires_grad_(True)
    sig, teacher_head = case.signal("hidden")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = selective_distill_loss(hidden, head, case.positions, sig, case.weights, global_token_count=case.count,
                                      teacher_head=teacher_head, chunk_size=2)
    gc.collect()
    alive = [shape for shape, ref in saved if ref() is not None]
    assert (len(case.flat),) in alive, "the hooks did not see the gather's index; the test would prove nothing"
    assert all(shape[-1] != case.v for shape in alive), alive
    loss.backward()
    assert hidden.grad is not None and head.grad is not None
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss = selective_distill_loss(hidden, head, case.positions, sig, case.weights, global_token_count=case.count,
                                      teacher_head=teacher_head)
        loss.backward(retain_graph=True)
        loss.backward()


def test_empty_selection_and_frozen_head():
    case = Case(2, 4, 3, 9, seed=5)
    hidden = case.hidden.clone().requires_grad_(True)
    head = case.head.clone().requires_grad_(True)
    empty = torch.zeros(0, 2, dtype=torch.int64)
    loss = selective_distill_loss(hidden, head, empty, FullLogProbs(torch.zeros(0, 9, dtype=torch.float64)),
                                  torch.zeros(0, dtype=torch.float64), global_token_count=0)
    loss.backward()
    assert loss.item() == 0.0 and hidden.grad.abs().max() == 0 and head.grad.abs().max() == 0
    frozen = case.head.clone()
    teacher_head = case.teacher_head.clone().requires_grad_(True)
    hidden = case.hidden.clone().requires_grad_(True)
    sig, _ = case.signal("hidden")
    loss = selective_distill_loss(hidden, frozen, case.positions, sig, case.weights, global_token_count=case.count,
                                  teacher_head=teacher_head)
    loss.backward()
    assert hidden.grad is not None and teacher_head.grad is None


def test_bad_input_errors():
    case = Case(2, 4, 3, 9, seed=6)
    sig, _ = case.signal("full")
    hidden = case.hidden.clone().requires_grad_(True)
    args = dict(global_token_count=case.count)
    with pytest.raises(ValueError, match="student has 9, teacher log-probs have 8"):
        selective_distill_loss(hidden, case.head, case.positions, FullLogProbs(sig.logprobs[:, :8]), case.weights, **args)
    with pytest.raises(ValueError, match="student has 9, teacher head has 10"):
        selective_distill_loss(hidden, case.head, case.positions, TeacherHidden(case.teacher_hidden[case.flat]),
                               case.weights, teacher_head=torch.zeros(10, 5, dtype=torch.float64), **args)
    with pytest.raises(ValueError, match="out of range"):
        selective_distill_loss(hidden, case.head, case.positions + 4, sig, case.weights, **args)
    with pytest.raises(ValueError, match="weights must have shape"):
        selective_distill_loss(hidden, case.head, case.positions, sig, case.weights[:-1], **args)
    with pytest.raises(ValueError, match="needs sampled_tokens"):
        selective_distill_loss(hidden, case.head, case.positions, sig, case.weights, loss="k1", **args)
    with pytest.raises(ValueError, match="valid losses"):
        selective_distill_loss(hidden, case.head, case.positions, sig, case.weights, loss="kl", **args)
    with pytest.raises(ValueError, match="lm_head_weight must be \\[V, d\\] with d = 3"):
        selective_distill_loss(hidden, case.head[:, :2], case.positions, sig, case.weights, **args)
    with pytest.raises(ValueError, match="hidden must be a float tensor \\[B, T, d\\]"):
        selective_distill_loss(hidden[0], case.head, case.positions, sig, case.weights, **args)
    with pytest.raises(ValueError, match="rows but there are"):
        selective_distill_loss(hidden, case.head, case.positions[:-1], sig, case.weights[:-1], **args)
    with pytest.raises(ValueError, match="positive number of selected tokens"):
        selective_distill_loss(hidden, case.head, case.positions, sig, case.weights, global_token_count=0)
