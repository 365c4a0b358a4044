"""The learner's loss: the LM head applied, with gradient, only to the selected hidden states.

Memory plan. The selected rows of ``hidden`` are gathered first (an ordinary differentiable
index), so nothing is ever projected for unselected positions. The projection then runs in
chunks of ``chunk_size`` rows inside one autograd Function whose forward pass also computes the
chunk's gradient wrt its hidden rows and the LM head (as fused linear-cross-entropy kernels do):
per chunk it holds the student scores [c, V] and, for a hidden teacher signal, the teacher
scores [c, V]; the element-wise softmax / divergence / gradient work runs on small row blocks
and writes d(loss)/d(logits) over the student scores in place. What survives a chunk is only
d(loss)/d(hidden) [c, d] and the running d(loss)/d(W) [V, d]; backward just multiplies them by
the incoming gradient, so nothing is recomputed and the autograd graph keeps no [*, V] tensor.
One backward pass per forward (no retain_graph through this loss).
The math runs in float32 (float64 for float64 inputs); gradients come back in the input dtypes.

For k1/k3 the returned value is the estimate sum(w * k) / count of KL(P_S || P_T) and its
gradient is the policy-gradient (REINFORCE) gradient sum(w * sg(k) * grad log P_S(y_t)) / count,
i.e. the per-token estimator used as a reward -k without baseline. With a top-k teacher signal
every loss is computed on the (k+1)-bucket distributions (the teacher's k tokens plus one tail
bucket, see ``tip_ray.tip.stats``), and a sampled token outside the top-k counts as the tail.
"""

from __future__ import annotations

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
    DIVERGENCES,
    LOG_FLOOR,
    SAMPLED_ESTIMATORS,
    check_beta,
    check_loss_name,
    compute_dtype,
    divergence_from_logprobs,
    log_probs,
    sample_bucket,
    sampled_token_estimator,
    student_bucket_logprobs,
    teacher_bucket_logprobs,
)
from .signal import TeacherSignal, TopKLogProbs, signal_form


@dataclass(frozen=True, eq=False)
class _LossSpec:
    """Everything the loss needs besides the two differentiable inputs."""

    teacher: TeacherSignal
    teacher_head: Tensor | None
    scale: Tensor  # [N] weights / global token count, in the compute dtype
    kind: str
    beta: float
    chunk_size: int
    sampled_tokens: Tensor | None  # [N] int64 or None
    dtype: torch.dtype


def _block_value_and_grad(
    scores: Tensor, teacher_part: Tensor | TopKLogProbs, spec: _LossSpec, scale: Tensor, sampled: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Per-row loss values [r] and d(sum(scale * loss))/d(scores) [r, V] for one block of rows."""
    with torch.enable_grad():
        logits = scores.detach().requires_grad_(True)
        log_p = log_probs(logits, spec.dtype)
        if isinstance(teacher_part, TopKLogProbs):
            log_p = student_bucket_logprobs(log_p, teacher_part.indices)
            log_q = teacher_bucket_logprobs(teacher_part.logprobs.detach(), teacher_part.tail_logprob.detach(), spec.dtype)
        else:
            log_q = log_probs(teacher_part.detach(), spec.dtype)
        if spec.kind in DIVERGENCES:
            values = divergence_from_logprobs(log_p, log_q, spec.kind, spec.beta)
            objective = (values * scale).sum()
        else:
            column = sample_bucket(teacher_part.indices, sampled) if isinstance(teacher_part, TopKLogProbs) else sampled
            student_lp = log_p.gather(1, column.unsqueeze(1)).squeeze(1)
            teacher_lp = log_q.gather(1, column.unsqueeze(1)).squeeze(1)
            values = sampled_token_estimator(student_lp, teacher_lp, spec.kind)
            objective = (values.detach() * scale * student_lp).sum()
        (grad,) = torch.autograd.grad(objective, logits)
    return values.detach(), grad


def _kl_block_in_place(scores: Tensor, teacher_scores: Tensor, scale: Tensor, spec: _LossSpec, floor_teacher: bool) -> Tensor:
    """Reverse or forward KL for one block of exact rows; its scaled gradient overwrites ``scores``.

    The common case, done analytically with few passes over [r, V]:
    reverse KL L = sum p (log p - log q) has dL/dz = p * (log p - log q - L);
    forward KL L = sum q (log q - log p) has dL/dz = p - q. Student scores are finite (a matrix
    product), so only teacher log-probs from a full signal need the LOG_FLOOR clamp.
    Returns the per-row values [r].
    """
    log_p = torch.log_softmax(scores, dim=-1)
    log_q = torch.log_softmax(teacher_scores.detach().to(spec.dtype), dim=-1)
    if floor_teacher:
        log_q.clamp_(min=LOG_FLOOR)
    if spec.kind == "reverse_kl" or (spec.kind == "jsd" and spec.beta == 1.0):
        diff = torch.sub(log_p, log_q, out=log_q)
        p = log_p.exp_()
        values = (p * diff).sum(dim=-1)
        diff.sub_(values.unsqueeze(1))
        torch.mul(diff, p.mul_(scale.unsqueeze(1)), out=scores)
    else:  # forward KL
        q = torch.exp(log_q)
        diff = torch.sub(log_q, log_p, out=log_q)
        values = (q * diff).sum(dim=-1)
        torch.sub(log_p.exp_(), q, out=scores)
        scores.mul_(scale.unsqueeze(1))
    return values


class _SelectiveHeadLoss(torch.autograd.Function):
    """loss(hidden_rows [N, d], head [V, d]); gradients computed in forward, scaled in backward."""

    @staticmethod
    def forward(ctx, rows: Tensor, head: Tensor, spec: _LossSpec) -> Tensor:
        # The math picks its own precision; an enclosing autocast region must not lower it.
        with torch.autocast(device_type=rows.device.type, enabled=False):
            return _SelectiveHeadLoss._forward(ctx, rows, head, spec)

    @staticmethod
    def _forward(ctx, rows: Tensor, head: Tensor, spec: _LossSpec) -> Tensor:
        dtype = spec.dtype
        want_rows, want_head = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        head_c = head.detach().to(dtype)
        teacher_head = spec.teacher_head.detach().to(dtype) if signal_form(spec.teacher) == "hidden" else None
        n, vocab = rows.shape[0], head.shape[0]
        grad_rows = torch.zeros(rows.shape, dtype=dtype, device=rows.device) if want_rows else None
        grad_head = torch.zeros(head.shape, dtype=dtype, device=head.device) if want_head else None
        total = torch.zeros((), dtype=dtype, device=rows.device)
        step = block_rows(vocab)
        analytic = not isinstance(spec.teacher, TopKLogProbs) and (
            spec.kind in ("reverse_kl", "forward_kl") or (spec.kind == "jsd" and spec.beta in (0.0, 1.0))
        )
        floor_teacher = signal_form(spec.teacher) == "full"
        for start, end in row_ranges(n, spec.chunk_size):
            rows_c = rows[start:end].detach().to(dtype)
            scores = rows_c @ head_c.T  # [c, V], overwritten block by block with d(loss)/d(scores)
            part = teacher_chunk(spec.teacher, start, end, teacher_head, dtype)
            for lo, hi in row_ranges(end - start, step):
                scale = spec.scale[start + lo : start + hi]
                if analytic:
                    values = _kl_block_in_place(scores[lo:hi], part[lo:hi], scale, spec, floor_teacher)
                else:
                    sampled = None if spec.sampled_tokens is None else spec.sampled_tokens[start + lo : start + hi]
                    values, grad = _block_value_and_grad(scores[lo:hi], teacher_block(part, lo, hi), spec, scale, sampled)
                    scores[lo:hi] = grad
                total += (values * scale).sum()
            if want_rows:
                torch.mm(scores, head_c, out=grad_rows[start:end])
            if want_head:
                grad_head.addmm_(scores.T, rows_c)
            del scores, part
        # Kept on ctx rather than saved as inputs/outputs: backward scales them in place and hands
        # them over, so autograd can adopt them as .grad without another [V, d] copy.
        ctx.grads = (grad_rows, grad_head)
        ctx.input_dtypes = (rows.dtype, head.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        if ctx.grads is None:
            raise RuntimeError(
                "selective_distill_loss supports one backward pass per forward (its gradients are "
                "computed in forward and handed over); do not use retain_graph=True through it"
            )
        (grad_rows, grad_head), ctx.grads = ctx.grads, None
        rows_dtype, head_dtype = ctx.input_dtypes
        out = []
        for grad, dtype in ((grad_rows, rows_dtype), (grad_head, head_dtype)):
            if grad is not None:
                grad = grad.mul_(grad_output.to(grad.dtype)).to(dtype)
            out.append(grad)
        return out[0], out[1], None


def flat_positions(positions: Tensor, batch: int, time: int) -> Tensor:
    """[N] flat indices into batch * time from [N, 2] (batch, time) pairs or [N] flat indices."""
    if not isinstance(positions, Tensor) or positions.dtype != torch.int64:
        raise ValueError("positions must be an int64 tensor: [N, 2] (batch, time) pairs or [N] flat indices")
    if positions.dim() == 2 and positions.shape[1] == 2:
        b, t = positions[:, 0], positions[:, 1]
        if positions.numel() and (int(b.min()) < 0 or int(b.max()) >= batch or int(t.min()) < 0 or int(t.max()) >= time):
            raise ValueError(f"positions out of range for hidden states of batch {batch} and time {time}")
        return b * time + t
    if positions.dim() == 1:
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= batch * time):
            raise ValueError(f"flat positions out of range [0, {batch * time}) for hidden states [{batch}, {time}, d]")
        return positions
    raise ValueError(f"positions must be [N, 2] or [N], got shape {tuple(positions.shape)}")


def selective_distill_loss(
    hidden: Tensor,
    lm_head_weight: Tensor,
    positions: Tensor,
    teacher: TeacherSignal,
    weights: Tensor,
    *,
    loss: str = "reverse_kl",
    beta: float = 0.5,
    global_token_count: float,
    teacher_head: Tensor | None = None,
    chunk_size: int = 512,
    sampled_tokens: Tensor | None = None,
) -> Tensor:
    """sum_i weights_i * loss_i / global_token_count over the selected positions, a scalar.

    hidden: [B, T, d] student final hidden states (requires grad; float32/bfloat16/float64).
    lm_head_weight: [V, d] the student's LM head (may be the tied embedding Parameter).
    positions: [N, 2] int64 (batch, time) or [N] int64 flat indices into B * T.
    teacher: TeacherSignal whose N rows are aligned with ``positions``; ``teacher_head`` [V, d_T]
    (frozen, gets no gradient) is needed for a TeacherHidden signal.
    weights: [N] float per-token weights (from the Selection). loss: one of LOSSES; beta: JSD
    weight. global_token_count: selected tokens in the whole update (all ranks, micro-batches).
    sampled_tokens: [N] int64 sampled ids y_t, needed for k1/k3.
    Returns a float32 scalar (float64 for float64 inputs); gradients flow to ``hidden`` and
    ``lm_head_weight`` only.
    """
    check_loss_name(loss)
    if loss == "jsd":
        check_beta(beta)
    check_chunk_size(chunk_size)
    if not isinstance(hidden, Tensor) or hidden.dim() != 3 or not hidden.is_floating_point():
        raise ValueError(f"selective_distill_loss: hidden must be a float tensor [B, T, d], got {getattr(hidden, 'shape', hidden)!r}")
    if lm_head_weight.dim() != 2 or lm_head_weight.shape[1] != hidden.shape[2]:
        raise ValueError(
            f"selective_distill_loss: lm_head_weight must be [V, d] with d = {hidden.shape[2]} (hidden size), "
            f"got {tuple(lm_head_weight.shape)}"
        )
    batch, time, width = hidden.shape
    vocab = int(lm_head_weight.shape[0])
    flat = flat_positions(positions, batch, time)
    n = int(flat.shape[0])
    check_teacher(teacher, vocab, n, teacher_head, "selective_distill_loss")
    if not isinstance(weights, Tensor) or weights.shape != (n,):
        raise ValueError(f"selective_distill_loss: weights must have shape ({n},), got {tuple(getattr(weights, 'shape', ()))}")
    if not bool(torch.isfinite(weights).all()):
        raise ValueError("selective_distill_loss: weights contain NaN or infinite values")
    if loss in SAMPLED_ESTIMATORS:
        if sampled_tokens is None:
            raise ValueError(f"loss {loss!r} needs sampled_tokens [N] int64, the sampled token at each position")
        if sampled_tokens.shape != (n,) or sampled_tokens.dtype != torch.int64:
            raise ValueError(f"sampled_tokens must be int64 of shape ({n},), got {sampled_tokens.dtype} {tuple(sampled_tokens.shape)}")
        if n and (int(sampled_tokens.min()) < 0 or int(sampled_tokens.max()) >= vocab):
            raise ValueError(f"sampled_tokens must be ids in [0, {vocab}) (the vocabulary size)")
    count = float(global_token_count)
    if not count > 0 and n > 0:
        raise ValueError(f"global_token_count must be the positive number of selected tokens in the update, got {global_token_count}")

    dtype = compute_dtype(hidden.dtype, lm_head_weight.dtype, *signal_dtypes(teacher, teacher_head))
    spec = _LossSpec(
        teacher=teacher,
        teacher_head=teacher_head,
        scale=weights.detach().to(dtype) / (count if count > 0 else 1.0),
        kind=loss,
        beta=float(beta),
        chunk_size=int(chunk_size),
        sampled_tokens=None if loss not in SAMPLED_ESTIMATORS else sampled_tokens,
        dtype=dtype,
    )
    rows = hidden.reshape(batch * time, width).index_select(0, flat)
    return _SelectiveHeadLoss.apply(rows, lm_head_weight, spec)
