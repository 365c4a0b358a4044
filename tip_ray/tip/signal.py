"""Teacher signal records: what the teacher sends for each response position.

Three forms, all over N flattened response positions (rows):

- ``FullLogProbs``: the teacher's log-probs over the whole vocabulary (exact, V values a row).
- ``TopKLogProbs``: the teacher's top-k log-probs plus the log of the remaining mass as one
  tail bucket (approximate, 2k + 1 values a row).
- ``TeacherHidden``: the teacher's final hidden states, the input of its LM head (exact, d_T
  values a row); whoever consumes it holds a frozen copy of the teacher's LM head.

"Select before transfer": ``index_signal`` keeps only the rows of selected positions, so the
teacher signal of unselected positions never has to leave the process that computed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Smallest positive float32: the tail mass is clamped to it so that its log stays finite.
_TINY_MASS = torch.finfo(torch.float32).tiny


def _require_float_matrix(name: str, value: Tensor) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 2:
        raise ValueError(f"{name} must be 2-D [N, ...], got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {value.dtype}")


@dataclass(frozen=True, eq=False)
class FullLogProbs:
    """Exact teacher signal: log-probs over the full vocabulary."""

    logprobs: Tensor
    """[N, V] float32/bfloat16: log P_T(v | c_t) for every vocabulary entry v."""

    def __post_init__(self) -> None:
        _require_float_matrix("FullLogProbs.logprobs", self.logprobs)


@dataclass(frozen=True, eq=False)
class TopKLogProbs:
    """Approximate teacher signal: the teacher's top-k log-probs and one tail bucket.

    Divergences from this form are computed on the (k+1)-bucket distribution: the k
    named tokens plus one bucket holding all remaining mass (see ``tip_ray.tip.stats``).
    """

    indices: Tensor
    """[N, k] int64: vocabulary ids of the teacher's top-k tokens (distinct within a row)."""
    logprobs: Tensor
    """[N, k] float: log P_T of those tokens."""
    tail_logprob: Tensor
    """[N] float: log(1 - sum(exp(logprobs))), the remaining mass, clamped to stay finite."""

    def __post_init__(self) -> None:
        if not isinstance(self.indices, Tensor) or self.indices.dtype != torch.int64:
            raise ValueError("TopKLogProbs.indices must be an int64 tensor [N, k]")
        if self.indices.dim() != 2:
            raise ValueError(f"TopKLogProbs.indices must be 2-D [N, k], got shape {tuple(self.indices.shape)}")
        _require_float_matrix("TopKLogProbs.logprobs", self.logprobs)
        if self.logprobs.shape != self.indices.shape:
            raise ValueError(
                f"TopKLogProbs.logprobs has shape {tuple(self.logprobs.shape)} but indices has "
                f"{tuple(self.indices.shape)}; they must match"
            )
        if self.indices.shape[1] < 1:
            raise ValueError("TopKLogProbs needs k >= 1 tokens per row")
        if (
            not isinstance(self.tail_logprob, Tensor)
            or not self.tail_logprob.is_floating_point()
            or self.tail_logprob.shape != self.indices.shape[:1]
        ):
            raise ValueError(
                f"TopKLogProbs.tail_logprob must be a float tensor of shape ({self.indices.shape[0]},), "
                f"got {getattr(self.tail_logprob, 'shape', type(self.tail_logprob).__name__)}"
            )

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


@dataclass(frozen=True, eq=False)
class TeacherHidden:
    """Exact and compact teacher signal: the teacher's final hidden states."""

    hidden: Tensor
    """[N, d_T] float32/bfloat16: input of the teacher's LM head at each position."""

    def __post_init__(self) -> None:
        _require_float_matrix("TeacherHidden.hidden", self.hidden)


TeacherSignal = FullLogProbs | TopKLogProbs | TeacherHidden

_FORMS = {FullLogProbs: "full", TopKLogProbs: "topk", TeacherHidden: "hidden"}


def signal_form(sig: TeacherSignal) -> str:
    """The name of a signal's form: "full", "topk" or "hidden" (reported in run metrics)."""
    try:
        return _FORMS[type(sig)]
    except KeyError:
        raise TypeError(
            f"teacher signal must be FullLogProbs, TopKLogProbs or TeacherHidden, got {type(sig).__name__}"
        ) from None


def is_exact(sig: TeacherSignal) -> bool:
    """True when the signal determines the teacher distribution exactly (full or hidden)."""
    return signal_form(sig) != "topk"


def num_rows(sig: TeacherSignal) -> int:
    """N, the number of positions the signal covers."""
    form = signal_form(sig)
    if form == "full":
        return int(sig.logprobs.shape[0])
    if form == "topk":
        return int(sig.indices.shape[0])
    return int(sig.hidden.shape[0])


def index_signal(sig: TeacherSignal, idx: Tensor) -> TeacherSignal:
    """Rows ``idx`` of a signal, same form ("select before transfer").

    idx: [M] int64 row indices into the signal's N rows (a bool mask [N] also works).
    """
    form = signal_form(sig)
    if not isinstance(idx, Tensor) or idx.dim() != 1 or idx.dtype not in (torch.int64, torch.bool):
        raise ValueError("index_signal needs a 1-D int64 (or bool) index tensor")
    if form == "full":
        return FullLogProbs(logprobs=sig.logprobs[idx])
    if form == "topk":
        return TopKLogProbs(indices=sig.indices[idx], logprobs=sig.logprobs[idx], tail_logprob=sig.tail_logprob[idx])
    return TeacherHidden(hidden=sig.hidden[idx])


def tail_logprob_of(topk_logprobs: Tensor) -> Tensor:
    """log(1 - sum(exp(topk_logprobs))) per row, computed in float32, clamped to stay finite.

    topk_logprobs: [N, k] float. Returns [N] float32.
    """
    lp = topk_logprobs.float()
    covered = torch.logsumexp(lp, dim=-1).clamp(max=0.0)
    tail_mass = (-torch.expm1(covered)).clamp(min=_TINY_MASS)
    return torch.log(tail_mass)


def topk_from_logprobs(logprobs: Tensor, k: int) -> TopKLogProbs:
    """The top-k plus tail form of full teacher log-probs.

    logprobs: [N, V] float. Returns indices [N, k] int64 (highest first; among equal values the
    lower id first), logprobs [N, k] in the input dtype, tail_logprob [N] float32.
    """
    _require_float_matrix("logprobs", logprobs)
    vocab = logprobs.shape[1]
    if not 1 <= k <= vocab:
        raise ValueError(f"k must be in [1, {vocab}] (the vocabulary size), got {k}")
    order = torch.sort(logprobs.float(), dim=-1, descending=True, stable=True).indices[:, :k]
    top = torch.gather(logprobs, 1, order)
    return TopKLogProbs(indices=order, logprobs=top, tail_logprob=tail_logprob_of(top))


def vocab_size_of(sig: TeacherSignal, teacher_head: Tensor | None = None) -> int | None:
    """The teacher's vocabulary size if the signal (or the teacher head) states it, else None.

    A top-k signal does not state it; a hidden signal states it through ``teacher_head`` [V, d_T].
    """
    form = signal_form(sig)
    if form == "full":
        return int(sig.logprobs.shape[1])
    if form == "hidden":
        return None if teacher_head is None else int(teacher_head.shape[0])
    return None


def signal_to(sig: TeacherSignal, device: torch.device | str) -> TeacherSignal:
    """The same signal with every tensor on `device` (e.g. onto the GPU that computes with it)."""
    from dataclasses import fields

    return type(sig)(**{f.name: getattr(sig, f.name).to(device) for f in fields(sig)})
