"""Prompt batches: drawn from the sampler for one update, and split across rollout workers."""

from __future__ import annotations

from tip_ray.data.prompts import PromptSampler
from tip_ray.records import PromptBatch


def make_prompt_batch(sampler: PromptSampler, batch_id: int, size: int) -> PromptBatch:
    picked = sampler.next_batch(size)
    return PromptBatch(
        batch_id=batch_id,
        prompt_ids=tuple(p.ids for _, p in picked),
        answers=tuple(p.answer for _, p in picked),
        prompt_rows=tuple(p.row for _, p in picked),
    )


def split_prompts(batch: PromptBatch, parts: int) -> list[PromptBatch]:
    """Contiguous shards of a prompt batch, one per rollout worker (empty shards dropped)."""
    n = len(batch.prompt_ids)
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    shards = []
    for lo, hi in zip(bounds, bounds[1:]):
        if hi > lo:
            shards.append(
                PromptBatch(
                    batch_id=batch.batch_id,
                    prompt_ids=batch.prompt_ids[lo:hi],
                    answers=batch.answers[lo:hi],
                    prompt_rows=batch.prompt_rows[lo:hi],
                    teachers=batch.teachers[lo:hi],
                )
            )
    return shards
