"""Distillation losses: per-token divergences, sampled-token estimators, global token mean.

Every divergence here is a function of two log-probability tensors over the same categories
(the last dimension): the full vocabulary for exact teacher signals, or the k+1 buckets of a
top-k teacher signal (the teacher's k named tokens plus one tail bucket; see
``student_bucket_logprobs``). The math runs in float32, or float64 for float64 inputs.

Generalized JSD(beta) follows GKD: with M = beta * P_T + (1 - beta) * P_S,
JSD(beta) = beta * KL(P_T || M) + (1 - beta) * KL(P_S || M); its end points are taken as the
limits used by GKD and TRL, beta = 0 -> forward KL(P_T || P_S), beta = 1 -> reverse KL(P_S || P_T).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_FLOOR = -1e30
"""Log-probs are clamped here so that a zero-probability category gives 0 * finite, never NaN."""

TAIL_LOG_FLOOR = math.log(torch.finfo(torch.float32).tiny)
"""Both tail buckets are clamped at log(smallest normal float32) (as ``tail_logprob`` is): an empty
tail (k = V) then has a tiny mass instead of 0, so float32 rounding in the teacher's tail mass does
not turn into a huge forward KL."""


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 when any input is float64, else float32 (bf16/fp16 inputs accumulate in float32)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def log_probs(scores: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """log_softmax over the last dimension in ``dtype`` (default: compute_dtype), clamped at LOG_FLOOR.

    Accepts logits or (possibly slightly unnormalised, e.g. bf16-rounded) log-probs.
    """
    dtype = dtype or compute_dtype(scores.dtype)
    return torch.log_softmax(scores.to(dtype), dim=-1).clamp(min=LOG_FLOOR)


def _kl(log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(A || B) summed over the last dimension, from clamped log-probs."""
    return (log_a.exp() * (log_a - log_b)).sum(dim=-1)


def _reverse_kl(student_logprobs: Tensor, teacher_logprobs: Tensor, beta: float) -> Tensor:
    return _kl(student_logprobs, teacher_logprobs)


def _forward_kl(student_logprobs: Tensor, teacher_logprobs: Tensor, beta: float) -> Tensor:
    return _kl(teacher_logprobs, student_logprobs)


def _jsd(student_logprobs: Tensor, teacher_logprobs: Tensor, beta: float) -> Tensor:
    if beta == 1.0:
        return _kl(student_logprobs, teacher_logprobs)
    if beta == 0.0:
        return _kl(teacher_logprobs, student_logprobs)
    check_beta(beta)
    log_mix = torch.logaddexp(teacher_logprobs + math.log(beta), student_logprobs + math.log1p(-beta))
    return beta * _kl(teacher_logprobs, log_mix) + (1.0 - beta) * _kl(student_logprobs, log_mix)


DIVERGENCES = {"reverse_kl": _reverse_kl, "forward_kl": _forward_kl, "jsd": _jsd}
"""Full divergences by loss name: f(student_logprobs, teacher_logprobs, beta) -> [n]."""

SAMPLED_ESTIMATORS = {
    "k1": lambda log_ratio: -log_ratio,
    "k3": lambda log_ratio: torch.expm1(log_ratio) - log_ratio,
}
"""Sampled-token estimators by loss name: f(log r) -> [n], r = P_T(y) / P_S(y)."""

LOSSES = (*DIVERGENCES, *SAMPLED_ESTIMATORS)
"""Every loss name: three full divergences and two sampled-token estimators."""


def check_loss_name(kind: str) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; valid losses: {', '.join(LOSSES)}")


def check_beta(beta: float) -> None:
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"jsd beta must be in [0, 1], got {beta}")


def divergence_from_logprobs(student_logprobs: Tensor, teacher_logprobs: Tensor, kind: str, beta: float = 0.5) -> Tensor:
    """Per-row divergence between two distributions over the same categories.

    student_logprobs, teacher_logprobs: [n, C] log-probs (clamped, see ``log_probs``).
    kind: "reverse_kl" (KL(S||T)), "forward_kl" (KL(T||S)) or "jsd" (generalized JSD(beta)).
    Returns [n] in the inputs' dtype; differentiable through both arguments.
    """
    if kind in DIVERGENCES:
        return DIVERGENCES[kind](student_logprobs, teacher_logprobs, beta)
    check_loss_name(kind)
    raise ValueError(
        f"loss {kind!r} is a sampled-token estimator, not a full divergence; "
        f"use sampled_token_estimator for {', '.join(SAMPLED_ESTIMATORS)}"
    )


def per_token_divergence(student_logits: Tensor, teacher_logprobs: Tensor, kind: str, beta: float = 0.5) -> Tensor:
    """Full-vocabulary divergence at each row, differentiable wrt ``student_logits``.

    student_logits: [n, V] float (any float dtype; math in float32, float64 for float64 input).
    teacher_logprobs: [n, V] float log-probs (renormalised with log_softmax, so logits also work).
    kind: "reverse_kl" | "forward_kl" | "jsd"; beta: JSD mixing weight in [0, 1].
    Returns [n] float32 (float64 for float64 input).
    """
    if student_logits.dim() != 2 or teacher_logprobs.dim() != 2:
        raise ValueError(
            f"per_token_divergence expects 2-D [n, V] inputs, got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logprobs.shape)}"
        )
    if student_logits.shape[1] != teacher_logprobs.shape[1]:
        raise ValueError(
            f"vocabulary size mismatch: student logits have {student_logits.shape[1]} entries, "
            f"teacher log-probs have {teacher_logprobs.shape[1]}"
        )
    if student_logits.shape[0] != teacher_logprobs.shape[0]:
        raise ValueError(
            f"row count mismatch: {student_logits.shape[0]} student rows, {teacher_logprobs.shape[0]} teacher rows"
        )
    dtype = compute_dtype(student_logits.dtype, teacher_logprobs.dtype)
    return divergence_from_logprobs(
        log_probs(student_logits, dtype), log_probs(teacher_logprobs, dtype).detach(), kind, beta
    )


def sampled_token_estimator(
    student_logprob_of_sample: Tensor, teacher_logprob_of_sample: Tensor, kind: str
) -> Tensor:
    """Per-token estimate of KL(P_S || P_T) from the sampled token y_t ~ P_S.

    k1 = log P_S(y) - log P_T(y);  k3 = r - 1 - log r with r = P_T(y) / P_S(y) (non-negative).
    Both inputs: [n] float. Returns [n] float32 (float64 for float64 input). As a policy-gradient
    reward use its negation, detached (a larger estimate means the student is further off).
    """
    if student_logprob_of_sample.shape != teacher_logprob_of_sample.shape:
        raise ValueError(
            f"sampled_token_estimator: shapes differ, {tuple(student_logprob_of_sample.shape)} vs "
            f"{tuple(teacher_logprob_of_sample.shape)}"
        )
    dtype = compute_dtype(student_logprob_of_sample.dtype, teacher_logprob_of_sample.dtype)
    log_ratio = teacher_logprob_of_sample.to(dtype) - student_logprob_of_sample.to(dtype)  # log r
    if kind in SAMPLED_ESTIMATORS:
        return SAMPLED_ESTIMATORS[kind](log_ratio)
    check_loss_name(kind)
    raise ValueError(f"loss {kind!r} is a full divergence; sampled_token_estimator takes only k1 or k3")


def global_token_mean(per_token: Tensor, weights: Tensor, global_token_count: int | float) -> Tensor:
    """sum(weights * per_token) / global_token_count, a scalar.

    per_token, weights: [n]. global_token_count: the number of selected tokens in the whole update
    (all data-parallel ranks and micro-batches), so the result does not depend on how the batch is
    split. A rank with no tokens (n = 0) contributes an exact 0; a count <= 0 is allowed only then.
    """
    if per_token.shape != weights.shape or per_token.dim() != 1:
        raise ValueError(
            f"global_token_mean needs per_token and weights of the same 1-D shape, got "
            f"{tuple(per_token.shape)} and {tuple(weights.shape)}"
        )
    count = float(global_token_count)
    if not math.isfinite(count) or (count <= 0 and per_token.numel() > 0):
        raise ValueError(
            f"global_token_count must be the positive number of selected tokens in the update, got {global_token_count}"
        )
    total = (per_token * weights.to(per_token.dtype)).sum()
    return total / count if count > 0 else total


def student_bucket_logprobs(student_logprobs: Tensor, indices: Tensor) -> Tensor:
    """The student's distribution over the teacher's k+1 buckets.

    student_logprobs: [n, V] clamped log-probs; indices: [n, k] the teacher's top-k ids.
    Returns [n, k+1]: log P_S of each named token, then log of the student's remaining mass
    (a logsumexp over the other V - k entries, so no cancellation), clamped at TAIL_LOG_FLOOR.
    """
    named = torch.gather(student_logprobs, 1, indices)
    rest = student_logprobs.scatter(1, indices, LOG_FLOOR)
    tail = torch.logsumexp(rest, dim=-1, keepdim=True).clamp(min=TAIL_LOG_FLOOR)
    return torch.cat([named, tail], dim=1)


def teacher_bucket_logprobs(topk_logprobs: Tensor, tail_logprob: Tensor, dtype: torch.dtype) -> Tensor:
    """The teacher's k+1 bucket log-probs [n, k+1], renormalised so that they sum to one."""
    tail = tail_logprob.to(dtype).clamp(min=TAIL_LOG_FLOOR).unsqueeze(1)
    buckets = torch.cat([topk_logprobs.to(dtype), tail], dim=1)
    return log_probs(buckets, dtype)


def sample_bucket(indices: Tensor, sampled_tokens: Tensor) -> Tensor:
    """Bucket id of each sampled token: its column in ``indices`` [n, k], or k (the tail) if absent."""
    match = indices == sampled_tokens.unsqueeze(1)
    column = match.to(torch.int64).argmax(dim=1)
    return torch.where(match.any(dim=1), column, torch.full_like(column, indices.shape[1]))
