"""Join the shards of one batch scored by several rollout workers / teachers: rows, and the
teacher signal rows that go with them."""

from __future__ import annotations

from typing import Sequence

import torch

from tip_ray.records import RolloutBatch, ScoredBatch
from tip_ray.tip.signal import FullLogProbs, TeacherHidden, TeacherSignal, TopKLogProbs


def merge_scored(shards: Sequence[ScoredBatch]) -> ScoredBatch:
    """Concatenate shards of one batch (from several rollout workers) along rows."""
    if len(shards) == 1:
        return shards[0]
    rollouts = [s.rollout for s in shards]
    width = max(r.input_ids.shape[1] for r in rollouts)

    def pad(t: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    # Any id the shards already pad with (padded positions are masked out; the id only has to exist).
    padding = torch.cat([r.input_ids[r.attention_mask == 0] for r in rollouts])
    pad_id = int(padding[0]) if padding.numel() else 0
    merged = RolloutBatch(
        batch_id=rollouts[0].batch_id,
        policy_version=min(r.policy_version for r in rollouts),
        input_ids=torch.cat([pad(r.input_ids, pad_id) for r in rollouts]),
        attention_mask=torch.cat([pad(r.attention_mask, 0) for r in rollouts]),
        response_mask=torch.cat([pad(r.response_mask, False) for r in rollouts]),
        prompt_index=torch.cat([r.prompt_index + offset for r, offset in zip(rollouts, _offsets(rollouts))]),
        response_texts=tuple(t for r in rollouts for t in r.response_texts),
        seconds=max(r.seconds for r in rollouts),
        prompt_rows=tuple(row for r in rollouts for row in r.prompt_rows),
    )
    return ScoredBatch(
        rollout=merged,
        teacher=cat_signals([s.teacher for s in shards]),
        teacher_sampled_logprobs=torch.cat([s.teacher_sampled_logprobs for s in shards]),
        seconds=max(s.seconds for s in shards),
    )


def _offsets(rollouts) -> list[int]:
    """Prompt-index offset of each shard: shards hold consecutive slices of the batch's prompts."""
    offsets, total = [], 0
    for r in rollouts:
        offsets.append(total)
        total += len(r.prompt_rows)
    return offsets


def cat_signals(signals: Sequence[TeacherSignal]) -> TeacherSignal:
    """Teacher signals of one form, concatenated along rows."""
    first = signals[0]
    if isinstance(first, TeacherHidden):
        return TeacherHidden(hidden=torch.cat([s.hidden for s in signals]))
    if isinstance(first, FullLogProbs):
        return FullLogProbs(logprobs=torch.cat([s.logprobs for s in signals]))
    return TopKLogProbs(
        indices=torch.cat([s.indices for s in signals]),
        logprobs=torch.cat([s.logprobs for s in signals]),
        tail_logprob=torch.cat([s.tail_logprob for s in signals]),
    )
