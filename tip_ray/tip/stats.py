"""Per-position token statistics for selection: student entropy, reverse and forward KL.

Computed without gradient, chunk by chunk over positions, in float32 whatever the input dtype
(float64 inputs stay float64 inside), returned as float32.

With a ``TopKLogProbs`` teacher signal the divergences are *approximate*: they are computed on
the (k+1)-bucket distributions, i.e. the teacher's k named tokens plus one tail bucket, with the
student's mass on those k tokens and the student's remaining mass as its tail bucket. By the
data-processing inequality these bucket divergences do not exceed the full ones (up to rounding
and the tail clamp). The entropy is always exact, since the student's full distribution is at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .chunks import (
    block_rows,
    check_chunk_size,
    check_teacher,
    row_ranges,
    signal_dtypes,
    teacher_block,
    teacher_chunk,
)
from .losses import (
    LOG_FLOOR,
    compute_dtype,
    divergence_from_logprobs,
    student_bucket_logprobs,
    teacher_bucket_logprobs,
)
from .signal import FullLogProbs, TeacherSignal, TopKLogProbs, is_exact, signal_form, topk_from_logprobs


@dataclass(frozen=True, eq=False)
class TokenStats:
    """Statistics of N positions, the two TIP axes plus forward KL."""

    entropy: Tensor
    """[N] float32: normalised student entropy H(P_S) / log|V|, in [0, 1]."""
    reverse_kl: Tensor
    """[N] float32: delta = KL(P_S || P_T) >= 0 (the per-token OPD loss)."""
    forward_kl: Tensor
    """[N] float32: KL(P_T || P_S) >= 0."""
    approximate: bool
    """True when the divergences come from a TopKLogProbs signal (bucket distributions)."""


def _require_logits(name: str, value: Tensor) -> None:
    if not isinstance(value, Tensor) or value.dim() != 2 or not value.is_floating_point():
        raise ValueError(f"{name} must be a 2-D float tensor [N, V], got {getattr(value, 'shape', value)!r}")
    if value.shape[1] < 2:
        raise ValueError(f"{name}: the vocabulary needs at least 2 entries, got {value.shape[1]}")


def _block_stats(
    student_scores: Tensor, teacher_part: Tensor | TopKLogProbs, dtype: torch.dtype, floor_student: bool, floor_teacher: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(entropy, reverse KL, forward KL) of a block of rows; entropy not yet normalised.

    Scores projected from hidden states are finite, so the LOG_FLOOR clamp (for -inf log-probs)
    is applied only to inputs that may hold -inf: given logits and full teacher log-probs.
    """
    log_p = torch.log_softmax(student_scores.to(dtype), dim=-1)
    if floor_student:
        log_p.clamp_(min=LOG_FLOOR)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim=-1)
    if isinstance(teacher_part, TopKLogProbs):
        log_p = student_bucket_logprobs(log_p, teacher_part.indices)
        log_q = teacher_bucket_logprobs(teacher_part.logprobs, teacher_part.tail_logprob, dtype)
        return entropy, divergence_from_logprobs(log_p, log_q, "reverse_kl"), divergence_from_logprobs(log_p, log_q, "forward_kl")
    log_q = torch.log_softmax(teacher_part.to(dtype), dim=-1)
    if floor_teacher:
        log_q.clamp_(min=LOG_FLOOR)
    diff = torch.sub(log_p, log_q, out=log_p)  # log p - log q
    reverse = (p * diff).sum(dim=-1)
    forward = -(log_q.exp_() * diff).sum(dim=-1)
    return entropy, reverse, forward


@torch.no_grad()
def _stats_over_chunks(
    project, rows: int, vocab: int, teacher, teacher_head, dtype, chunk_size, device, floor_student: bool
) -> TokenStats:
    """Walk the positions chunk by chunk; ``project(start, end)`` gives the student scores [c, V]."""
    check_chunk_size(chunk_size)
    head = teacher_head.detach().to(dtype) if signal_form(teacher) == "hidden" else None
    out = torch.empty(3, rows, dtype=torch.float32, device=device)
    step = block_rows(vocab)
    floor_teacher = signal_form(teacher) == "full"
    for start, end in row_ranges(rows, chunk_size):
        scores = project(start, end)
        part = teacher_chunk(teacher, start, end, head, dtype)
        for lo, hi in row_ranges(end - start, step):
            values = _block_stats(scores[lo:hi], teacher_block(part, lo, hi), dtype, floor_student, floor_teacher)
            for i, value in enumerate(values):
                out[i, start + lo : start + hi] = value.to(out.device, torch.float32)
    out[0] /= math.log(vocab)
    out[0].clamp_(0.0, 1.0)
    out[1:].clamp_(min=0.0)  # KL >= 0; rounding can leave -1e-8
    return TokenStats(entropy=out[0], reverse_kl=out[1], forward_kl=out[2], approximate=not is_exact(teacher))


def token_stats(
    student_logits: Tensor, teacher: TeacherSignal, teacher_head: Tensor | None = None, chunk_size: int = 512
) -> TokenStats:
    """Statistics from the student's logits.

    student_logits: [N, V] float32/bfloat16 (float64 accepted). teacher: any TeacherSignal with N
    rows; teacher_head [V, d_T] is needed for a TeacherHidden signal. chunk_size: positions per
    chunk. Raises ValueError naming both sizes if the vocabularies differ.
    """
    _require_logits("token_stats: student_logits", student_logits)
    rows, vocab = student_logits.shape
    check_teacher(teacher, vocab, rows, teacher_head, "token_stats")
    dtype = compute_dtype(student_logits.dtype, *signal_dtypes(teacher, teacher_head))
    return _stats_over_chunks(
        lambda start, end: student_logits[start:end].detach(),
        rows,
        vocab,
        teacher,
        teacher_head,
        dtype,
        chunk_size,
        student_logits.device,
        floor_student=True,
    )


def token_stats_from_hidden(
    student_hidden: Tensor,
    student_head: Tensor,
    teacher: TeacherSignal,
    teacher_head: Tensor | None = None,
    chunk_size: int = 512,
) -> TokenStats:
    """Statistics from the student's final hidden states, projected chunk by chunk.

    student_hidden: [N, d]; student_head: [V, d] (the LM head weight). Never holds more than
    ``chunk_size`` x V student (and teacher) scores at once.
    """
    if student_hidden.dim() != 2 or student_head.dim() != 2:
        raise ValueError(
            f"token_stats_from_hidden: student_hidden must be [N, d] and student_head [V, d], got "
            f"{tuple(student_hidden.shape)} and {tuple(student_head.shape)}"
        )
    if student_hidden.shape[1] != student_head.shape[1]:
        raise ValueError(
            f"token_stats_from_hidden: hidden size {student_hidden.shape[1]} does not match student_head "
            f"[V, d] = {tuple(student_head.shape)}"
        )
    rows, vocab = int(student_hidden.shape[0]), int(student_head.shape[0])
    if vocab < 2:
        raise ValueError(f"token_stats_from_hidden: the vocabulary needs at least 2 entries, got {vocab}")
    check_teacher(teacher, vocab, rows, teacher_head, "token_stats_from_hidden")
    dtype = compute_dtype(student_hidden.dtype, student_head.dtype, *signal_dtypes(teacher, teacher_head))
    head = student_head.detach().to(dtype)
    return _stats_over_chunks(
        lambda start, end: student_hidden[start:end].detach().to(dtype) @ head.T,
        rows,
        vocab,
        teacher,
        teacher_head,
        dtype,
        chunk_size,
        student_hidden.device,
        floor_student=False,
    )


def approximation_error(
    student_logits: Tensor, full_teacher_logprobs: Tensor, k: int, chunk_size: int = 512
) -> dict[str, float]:
    """How far the top-k (+ tail) statistics are from the exact ones on the same inputs.

    student_logits, full_teacher_logprobs: [N, V]. Returns max and mean absolute errors of
    reverse and forward KL ("reverse_kl_max_abs", "reverse_kl_mean_abs", "forward_kl_max_abs",
    "forward_kl_mean_abs"), plus "k". The entropy is exact in both forms and not reported.
    """
    exact = token_stats(student_logits, FullLogProbs(full_teacher_logprobs), chunk_size=chunk_size)
    approx = token_stats(student_logits, topk_from_logprobs(full_teacher_logprobs, k), chunk_size=chunk_size)
    report: dict[str, float] = {"k": float(k)}
    for name in ("reverse_kl", "forward_kl"):
        error = (getattr(exact, name) - getattr(approx, name)).abs()
        report[f"{name}_max_abs"] = float(error.max()) if error.numel() else 0.0
        report[f"{name}_mean_abs"] = float(error.mean()) if error.numel() else 0.0
    return report
