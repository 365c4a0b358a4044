"""Section ``numerics``: the method core on the device in bfloat16 against the float64 path.

Inputs are drawn in float64 and rounded to bfloat16 once. The device computes from the bf16
tensors; the reference runs the same project functions on the CPU in float64 from the same
(rounded) values, and the reverse-KL loss is also checked against a naive float64 formula
written here. So the differences measure the device path's own arithmetic (float32
accumulation, gradients handed back in bf16), not the rounding of the inputs.

Tolerances (bf16 keeps 8 significant bits, a relative rounding of 2^-9 = 0.2%):

- statistics (float32 inside): |dev - ref| <= 2e-3 + 1e-2 |ref| per position (entropy is
  normalised to [0, 1]; the KLs are in nats);
- selection rules given the float64 statistics on the device: deterministic rules select exactly
  the reference's tokens; ``random`` and ``entropy_sample`` (whose random streams differ between
  devices) keep k tokens per rollout, only at response positions, and the importance weights
  equal mean(h) / h_t to 1e-5;
- soft_or on the device's own statistics keeps >= 98% of the reference's tokens (near-ties may flip);
- selective loss value: |dev - ref| <= 1e-3 + 1e-2 |ref|; gradients wrt hidden states and LM head
  (returned in bf16): ||g - g_ref|| / ||g_ref|| <= 2e-2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from tip_ray.tip import (
    LOSSES,
    RULES,
    FullLogProbs,
    TeacherHidden,
    index_signal,
    keep_counts,
    select_tokens,
    selected_weights,
    selection_positions,
    selective_distill_loss,
    token_stats,
    token_stats_from_hidden,
    topk_from_logprobs,
)

from .budget import Deadline, SectionRecord
from .sizes import Sizes

STATS_ATOL, STATS_RTOL = 2e-3, 1e-2
LOSS_ATOL, LOSS_RTOL = 1e-3, 1e-2
GRAD_RTOL = 2e-2
SOFT_OR_OVERLAP = 0.98
TOPK = 64


def _close(dev: Tensor, ref: Tensor, atol: float, rtol: float) -> tuple[bool, float]:
    """(all within atol + rtol |ref|, largest absolute error)."""
    dev, ref = dev.detach().double().cpu(), ref.detach().double().cpu()
    error = (dev - ref).abs()
    return bool((error <= atol + rtol * ref.abs()).all()), float(error.max()) if error.numel() else 0.0


def _relative_l2(dev: Tensor, ref: Tensor) -> float:
    dev, ref = dev.detach().double().cpu(), ref.detach().double().cpu()
    return float((dev - ref).norm() / ref.norm().clamp(min=1e-300))


class _Inputs:
    """One set of random inputs, rounded to bf16: ``dev`` copies on the device, ``ref`` in float64."""

    def __init__(self, sizes: Sizes, device: torch.device):
        g = torch.Generator().manual_seed(1234)
        rows, time, width, vocab = sizes.numerics_rows, sizes.numerics_time, sizes.numerics_hidden, sizes.numerics_vocab
        n = rows * time
        # A spread of sharpness per position, so that entropies cover the whole [0, 1] range.
        sharpness = torch.empty(n, 1, dtype=torch.float64).uniform_(0.2, 4.0, generator=g)
        hidden = torch.randn(n, width, generator=g, dtype=torch.float64) * sharpness
        head = torch.randn(vocab, width, generator=g, dtype=torch.float64) / math.sqrt(width)
        teacher_hidden = hidden + 0.5 * torch.randn(n, width, generator=g, dtype=torch.float64)
        teacher_head = head + 0.5 * torch.randn(vocab, width, generator=g, dtype=torch.float64) / math.sqrt(width)
        logits = hidden @ head.T
        teacher_logprobs = torch.log_softmax(teacher_hidden @ teacher_head.T, dim=-1)
        self.shape = (rows, time)
        self.width = width
        self.vocab = vocab
        self.sampled = torch.randint(0, vocab, (n,), generator=g)
        # Rollout b has time - 3 b response positions; the rest is padding.
        self.response_mask = torch.arange(time).unsqueeze(0) < (time - 3 * torch.arange(rows)).unsqueeze(1)
        self.device = device
        low = {
            "hidden": hidden, "head": head, "teacher_hidden": teacher_hidden, "teacher_head": teacher_head,
            "logits": logits, "teacher_logprobs": teacher_logprobs,
        }
        low = {name: value.to(torch.bfloat16) for name, value in low.items()}
        self.dev = {name: value.to(device) for name, value in low.items()}
        self.ref = {name: value.double() for name, value in low.items()}


def _check_stats(inputs: _Inputs, record: SectionRecord) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Statistics from hidden states, full log-probs and top-k; returns (device, reference) of
    the hidden form as [B, T] tensors, for the rules."""
    dev, ref = inputs.dev, inputs.ref
    forms: dict[str, tuple[Callable, Callable]] = {
        "hidden": (
            lambda: token_stats_from_hidden(dev["hidden"], dev["head"], TeacherHidden(dev["teacher_hidden"]),
                                            teacher_head=dev["teacher_head"]),
            lambda: token_stats_from_hidden(ref["hidden"], ref["head"], TeacherHidden(ref["teacher_hidden"]),
                                            teacher_head=ref["teacher_head"]),
        ),
        "full": (
            lambda: token_stats(dev["logits"], FullLogProbs(dev["teacher_logprobs"])),
            lambda: token_stats(ref["logits"], FullLogProbs(ref["teacher_logprobs"])),
        ),
    }
    topk_dev, topk_ref = topk_from_logprobs(dev["teacher_logprobs"], TOPK), topk_from_logprobs(ref["teacher_logprobs"], TOPK)
    same = bool(torch.equal(topk_dev.indices.cpu(), topk_ref.indices))
    record.check(f"top-{TOPK} ids from bf16 teacher log-probs", same, None, "identical ids")
    forms["topk"] = (lambda: token_stats(dev["logits"], topk_dev), lambda: token_stats(ref["logits"], topk_ref))
    kept = {}
    for form, (on_device, reference) in forms.items():
        got, want = on_device(), reference()
        for name in ("entropy", "reverse_kl", "forward_kl"):
            passed, error = _close(getattr(got, name), getattr(want, name), STATS_ATOL, STATS_RTOL)
            record.check(f"stats {form}: {name}", passed, error, f"{STATS_ATOL} + {STATS_RTOL}|ref|")
        if form == "hidden":
            kept = {name: (getattr(got, name).reshape(inputs.shape), getattr(want, name).reshape(inputs.shape))
                    for name in ("entropy", "reverse_kl", "forward_kl")}
    return {k: v[0] for k, v in kept.items()}, {k: v[1] for k, v in kept.items()}


def _rule_args(rule: str) -> tuple[float, dict]:
    if rule in ("all", "quadrant"):
        return 1.0, {}
    return 0.5, ({"importance_weights": True} if rule == "entropy_sample" else {})


def _check_rules(inputs: _Inputs, stats_dev: dict, stats_ref: dict, record: SectionRecord) -> None:
    mask_ref = inputs.response_mask
    mask_dev = mask_ref.to(inputs.device)
    ref_on_device = {name: value.to(inputs.device) for name, value in stats_ref.items()}
    for rule in RULES:
        ratio, params = _rule_args(rule)
        got = select_tokens(rule, **ref_on_device, response_mask=mask_dev, ratio=ratio,
                            generator=torch.Generator(device=inputs.device).manual_seed(0), **params)
        got_mask, got_weights = got.mask.cpu(), got.weights.cpu()
        if rule in ("random", "entropy_sample"):
            counts_ok = torch.equal(got_mask.sum(1), keep_counts(mask_ref, ratio))
            inside = not bool((got_mask & ~mask_ref).any())
            note = "k per rollout, response positions only"
            error, tolerance = None, None
            passed = counts_ok and inside
            if rule == "entropy_sample":
                entropy = torch.where(mask_ref, stats_ref["entropy"].double(), 0.0)
                mean = entropy.sum(1, keepdim=True) / mask_ref.sum(1, keepdim=True)
                expected = torch.where(got_mask, mean / entropy.clamp(min=1e-300), 0.0)
                ok, error = _close(got_weights, expected, 0.0, 1e-5)
                tolerance = "1e-5|ref|"
                passed = passed and ok
                note += "; importance weights mean(h)/h_t"
        else:
            want = select_tokens(rule, **stats_ref, response_mask=mask_ref, ratio=ratio, **params)
            passed = torch.equal(got_mask, want.mask) and torch.equal(got_weights, want.weights)
            error, tolerance = float((got_mask != want.mask).sum()), 0
            note = "same tokens and weights as on the CPU (error = tokens that differ)"
        record.check(f"rule {rule} (ratio {ratio})", passed, error, tolerance, note)
    mine = select_tokens("soft_or", **stats_dev, response_mask=mask_dev, ratio=0.5).mask.cpu()
    want = select_tokens("soft_or", **stats_ref, response_mask=mask_ref, ratio=0.5).mask
    overlap = float((mine & want).sum() / want.sum())
    record.check("rule soft_or on the device's bf16-path statistics", overlap >= SOFT_OR_OVERLAP, overlap,
                 SOFT_OR_OVERLAP, "share of the reference's tokens kept")


def _naive_reverse_kl(inputs: _Inputs, flat: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Reverse KL loss and its gradients, written out in float64 (no project code)."""
    ref = inputs.ref
    hidden = ref["hidden"].clone().requires_grad_(True)
    head = ref["head"].clone().requires_grad_(True)
    log_p = torch.log_softmax(hidden[flat] @ head.T, dim=-1)
    log_q = torch.log_softmax(ref["teacher_hidden"][flat] @ ref["teacher_head"].T, dim=-1)
    loss = (weights.double() * (log_p.exp() * (log_p - log_q)).sum(-1)).sum() / flat.numel()
    loss.backward()
    return loss.detach(), hidden.grad, head.grad


def _selective(inputs: _Inputs, on: dict, device, positions, weights, signal, loss, sampled):
    rows, time = inputs.shape
    hidden = on["hidden"].reshape(rows, time, inputs.width).clone().requires_grad_(True)
    head = on["head"].clone().requires_grad_(True)
    value = selective_distill_loss(
        hidden, head, positions.to(device), signal, weights.to(device), loss=loss,
        global_token_count=float(positions.shape[0]), teacher_head=on["teacher_head"],
        sampled_tokens=sampled.to(device),
    )
    value.backward()
    return value.detach(), hidden.grad.reshape(rows * time, inputs.width), head.grad


def _check_loss(inputs: _Inputs, stats_ref: dict, record: SectionRecord, deadline: Deadline) -> None:
    selection = select_tokens("soft_or", **stats_ref, response_mask=inputs.response_mask, ratio=0.5)
    positions, weights = selection_positions(selection), selected_weights(selection)
    flat = positions[:, 0] * inputs.shape[1] + positions[:, 1]
    sampled = inputs.sampled[flat]
    topk_dev = topk_from_logprobs(inputs.dev["teacher_logprobs"], TOPK)
    topk_ref = topk_from_logprobs(inputs.ref["teacher_logprobs"], TOPK)

    def signal(form: str, on: dict, topk) -> object:
        if form == "hidden":
            return TeacherHidden(on["teacher_hidden"][flat.to(on["teacher_hidden"].device)])
        if form == "full":
            return FullLogProbs(on["teacher_logprobs"][flat.to(on["teacher_logprobs"].device)])
        return index_signal(topk, flat.to(topk.indices.device))

    naive = _naive_reverse_kl(inputs, flat, weights)
    cases = [(loss, "hidden") for loss in LOSSES] + [("reverse_kl", "full"), ("reverse_kl", "topk")]
    for index, (loss, form) in enumerate(cases):
        if not deadline.allows():
            record.out_of_time([f"selective {loss} ({form})" for loss, form in cases[index:]])
            return
        got = _selective(inputs, inputs.dev, inputs.device, positions, weights, signal(form, inputs.dev, topk_dev), loss, sampled)
        want = _selective(inputs, inputs.ref, "cpu", positions, weights, signal(form, inputs.ref, topk_ref), loss, sampled)
        if (loss, form) == ("reverse_kl", "hidden"):
            # The float64 path itself against the naive formula: they must agree to rounding.
            agree = max(abs(float(want[0] - naive[0])) / abs(float(naive[0])),
                        _relative_l2(want[1], naive[1]), _relative_l2(want[2], naive[2]))
            record.check("selective reverse_kl float64 path vs naive float64 formula", agree <= 1e-9, agree, 1e-9,
                         "largest relative error of value and gradients")
        passed, error = _close(got[0], want[0], LOSS_ATOL, LOSS_RTOL)
        record.check(f"selective {loss} ({form}): value", passed, error, f"{LOSS_ATOL} + {LOSS_RTOL}|ref|")
        for name, g, w in (("d/d hidden", got[1], want[1]), ("d/d head", got[2], want[2])):
            error = _relative_l2(g, w)
            record.check(f"selective {loss} ({form}): {name}", error <= GRAD_RTOL, error, GRAD_RTOL, "relative L2")


def run(device: torch.device, sizes: Sizes, deadline: Deadline, record: SectionRecord) -> None:
    inputs = _Inputs(sizes, device)
    record.info(vocab=inputs.vocab, hidden=inputs.width, rows=inputs.shape[0], positions_per_row=inputs.shape[1],
                device_dtype="bfloat16", reference="float64 on the CPU")
    stats_dev, stats_ref = _check_stats(inputs, record)
    if deadline.allows():
        _check_rules(inputs, stats_dev, stats_ref, record)
    else:
        record.out_of_time(["rules"])
    _check_loss(inputs, stats_ref, record, deadline)
