"""Shards of one batch from several rollout workers merge into the batch one worker would have
packed: same rows, same tokens and masks, teacher positions in the same row-major order."""

from __future__ import annotations

import torch

from tip_ray.records import PromptBatch, ScoredBatch
from tip_ray.tip.signal import TeacherHidden
from tip_ray.rollout.backend import Sample
from tip_ray.rollout.pack import pack_rollout
from tip_ray.scoring.merge import merge_scored

PAD = 7


def prompt_batch(prompts, rows) -> PromptBatch:
    return PromptBatch(batch_id=3, prompt_ids=tuple(tuple(p) for p in prompts), answers=tuple("" for _ in prompts),
                       prompt_rows=tuple(rows))


def scored(prompts, rows, samples) -> ScoredBatch:
    rollout = pack_rollout(prompt_batch(prompts, rows), samples, policy_version=1, pad_token_id=PAD,
                           texts=["x"] * len(samples), seconds=0.0)
    n = int(rollout.response_mask.sum())
    # A teacher "hidden state" per response position that says which token it belongs to.
    hidden = rollout.input_ids[rollout.response_mask].double().unsqueeze(-1).repeat(1, 2)
    return ScoredBatch(rollout=rollout, teacher=TeacherHidden(hidden=hidden),
                       teacher_sampled_logprobs=-torch.arange(n, dtype=torch.float32), seconds=0.0)


def test_shards_of_different_widths_merge_like_one_worker():
    prompts = [[1, 2], [3, 4, 5, 6], [8]]
    samples = [Sample(0, (10, 11), (-0.1, -0.2)), Sample(1, (12,), (-0.3,)), Sample(2, (13, 14, 15, 16, 17), (-0.4,) * 5)]
    whole = scored(prompts, [0, 1, 2], samples)
    first = scored(prompts[:2], [0, 1], samples[:2])  # no padding needed beyond its own width
    second = scored(prompts[2:], [2], [Sample(0, s.response_ids, s.logprobs) for s in samples[2:]])
    merged = merge_scored([first, second])
    m, w = merged.rollout, whole.rollout
    assert m.input_ids.shape == w.input_ids.shape
    assert torch.equal(m.attention_mask, w.attention_mask) and torch.equal(m.response_mask, w.response_mask)
    live = w.attention_mask.bool()
    assert torch.equal(m.input_ids[live], w.input_ids[live])
    assert torch.equal(m.prompt_index, w.prompt_index) and m.prompt_rows == w.prompt_rows
    assert torch.equal(merged.teacher.hidden, whole.teacher.hidden)
