"""Chunked walking over positions, shared by the statistics and the selective loss.

Two levels keep memory bounded: a *chunk* of positions (``chunk_size`` rows, default 512) is
projected through the LM head(s) at once, because a large matrix product is efficient; inside
a chunk the element-wise work (softmax, divergences, their gradients) runs on small *blocks*
of rows, so that its temporaries stay a few tens of MiB whatever the vocabulary size.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .signal import TeacherSignal, TopKLogProbs, index_signal, num_rows, signal_form

BLOCK_ELEMENTS = 1 << 22
"""Element-wise work is done on blocks of about this many [rows x V] entries (16 MiB in float32):
small enough to bound the temporaries, large enough that per-operation overhead (thread start-up
of each parallel kernel) stays small next to the work."""


def check_chunk_size(chunk_size: int) -> None:
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")


def row_ranges(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive row ranges of at most ``size`` rows covering [0, n)."""
    for start in range(0, n, size):
        yield start, min(start + size, n)


def block_rows(vocab: int) -> int:
    """Rows per element-wise block for a vocabulary of this size (at least one)."""
    return max(1, BLOCK_ELEMENTS // max(vocab, 1))


def check_teacher(sig: TeacherSignal, student_vocab: int, rows: int, teacher_head: Tensor | None, where: str) -> None:
    """Validate a teacher signal against the student: row count, vocabulary size, teacher head.

    Raises ValueError naming ``where`` and both sizes on any mismatch.
    """
    form = signal_form(sig)
    if num_rows(sig) != rows:
        raise ValueError(f"{where}: teacher signal has {num_rows(sig)} rows but there are {rows} student positions")
    if form == "full":
        teacher_vocab = int(sig.logprobs.shape[1])
        if teacher_vocab != student_vocab:
            raise ValueError(
                f"{where}: vocabulary size mismatch: student has {student_vocab}, teacher log-probs have "
                f"{teacher_vocab}; student and teacher must share one vocabulary"
            )
    elif form == "hidden":
        if teacher_head is None:
            raise ValueError(f"{where}: a TeacherHidden signal needs teacher_head, the teacher's LM head weight [V, d_T]")
        if teacher_head.dim() != 2:
            raise ValueError(f"{where}: teacher_head must be [V, d_T], got shape {tuple(teacher_head.shape)}")
        if int(teacher_head.shape[0]) != student_vocab:
            raise ValueError(
                f"{where}: vocabulary size mismatch: student has {student_vocab}, teacher head has "
                f"{int(teacher_head.shape[0])}; student and teacher must share one vocabulary"
            )
        if teacher_head.shape[1] != sig.hidden.shape[1]:
            raise ValueError(
                f"{where}: teacher hidden size {sig.hidden.shape[1]} does not match teacher_head "
                f"[V, d_T] = {tuple(teacher_head.shape)}"
            )
    else:
        if sig.k > student_vocab:
            raise ValueError(f"{where}: teacher top-k has k={sig.k} > student vocabulary size {student_vocab}")
        if sig.indices.numel() > 0:
            low, high = int(sig.indices.min()), int(sig.indices.max())
            if low < 0 or high >= student_vocab:
                raise ValueError(
                    f"{where}: vocabulary size mismatch: teacher top-k id {high if high >= student_vocab else low} "
                    f"is outside the student vocabulary of size {student_vocab}"
                )


def signal_dtypes(sig: TeacherSignal, teacher_head: Tensor | None) -> list[torch.dtype]:
    """The floating dtypes a signal brings into the computation (to pick the compute dtype)."""
    if signal_form(sig) == "hidden":
        return [sig.hidden.dtype] + ([teacher_head.dtype] if teacher_head is not None else [])
    return [sig.logprobs.dtype]


def teacher_chunk(
    sig: TeacherSignal, start: int, end: int, teacher_head: Tensor | None, dtype: torch.dtype
) -> Tensor | TopKLogProbs:
    """The teacher's part for rows [start, end).

    Returns [c, V] teacher scores whose log_softmax is log P_T (projected hidden states in
    ``dtype``, or a view of the full log-probs), or the TopKLogProbs rows for a top-k signal.
    ``teacher_head`` must already be in ``dtype`` for a hidden signal.
    """
    form = signal_form(sig)
    if form == "full":
        return sig.logprobs[start:end]
    if form == "topk":
        return index_signal(sig, torch.arange(start, end, device=sig.indices.device))
    return sig.hidden[start:end].to(dtype) @ teacher_head.T


def teacher_block(part: Tensor | TopKLogProbs, lo: int, hi: int) -> Tensor | TopKLogProbs:
    """Rows [lo, hi) of a chunk's teacher part."""
    if isinstance(part, TopKLogProbs):
        return TopKLogProbs(indices=part.indices[lo:hi], logprobs=part.logprobs[lo:hi], tail_logprob=part.tail_logprob[lo:hi])
    return part[lo:hi]
