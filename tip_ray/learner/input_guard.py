"""Refuse a batch whose numbers the learner must not train on: NaN/inf in the teacher signal,
the token weights or the selector's statistics (checked before the forward pass)."""

from __future__ import annotations

import math

import torch

from tip_ray.records import SelectedBatch
from tip_ray.tip.signal import FullLogProbs, TeacherHidden, TopKLogProbs


def count_nonfinite_inputs(batch: SelectedBatch) -> int:
    """NaN/inf values in what the learner trains on (teacher signal, weights, statistics).

    Log-probs may be -inf (a token the teacher rules out); NaN or +inf are never valid.
    """

    def not_finite(t: torch.Tensor) -> int:
        return int((~torch.isfinite(t)).sum()) if t.numel() else 0

    def not_logprob(t: torch.Tensor) -> int:
        return int((torch.isnan(t) | (t == math.inf)).sum()) if t.numel() else 0

    sig = batch.teacher
    if isinstance(sig, TeacherHidden):
        bad = not_finite(sig.hidden)
    elif isinstance(sig, FullLogProbs):
        bad = not_logprob(sig.logprobs)
    elif isinstance(sig, TopKLogProbs):
        bad = not_logprob(sig.logprobs) + not_logprob(sig.tail_logprob)
    else:
        bad = 0
    bad += not_finite(batch.weights) + not_logprob(batch.teacher_sampled_logprobs)
    # The selector's statistics cover every response token, selected or not: a NaN there means
    # the teacher signal was bad somewhere and the selection itself cannot be trusted.
    summary = batch.summary
    bad += sum(not math.isfinite(v) for v in (summary.mean_entropy, summary.mean_reverse_kl))
    return bad
