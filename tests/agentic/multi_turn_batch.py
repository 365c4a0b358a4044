"""A hand-built batch of multi-turn trajectories: model turns and environment tokens interleaved."""

from __future__ import annotations

import torch

from tip_ray.records import PromptBatch, RolloutBatch
from tip_ray.rollout.backend import Sample
from tip_ray.rollout.pack import pack_rollout

# Each response as (who wrote it, length) segments: "m" = the model, "e" = the environment.
LAYOUTS = (
    (("m", 5), ("e", 7), ("m", 4), ("e", 3), ("m", 3)),
    (("m", 6),),  # a single-turn row in the same batch
    (("m", 3), ("e", 9), ("m", 2)),
)
PROMPT_LENGTHS = (4, 6, 3)


def multi_turn_batch(vocab_size: int, seed: int = 0) -> tuple[RolloutBatch, list[Sample]]:
    gen = torch.Generator().manual_seed(seed)

    def ids(n: int) -> tuple[int, ...]:
        return tuple(int(i) for i in torch.randint(4, vocab_size, (n,), generator=gen))

    prompts = tuple(ids(n) for n in PROMPT_LENGTHS)
    samples = []
    for index, layout in enumerate(LAYOUTS):
        tokens, written, logprobs = [], [], []
        for who, n in layout:
            tokens += ids(n)
            written += [who == "m"] * n
            logprobs += [-0.5 if who == "m" else 0.0] * n
        samples.append(Sample(prompt_index=index, response_ids=tuple(tokens), logprobs=tuple(logprobs),
                              model_written=tuple(written) if len(layout) > 1 else None))
    batch = PromptBatch(batch_id=0, prompt_ids=prompts, answers=(None,) * 3,
                        prompt_rows=(0, 1, 2))
    rollout = pack_rollout(batch, samples, policy_version=0, pad_token_id=0, texts=("",) * 3, seconds=0.0)
    return rollout, samples


def environment_positions(rollout: RolloutBatch) -> torch.Tensor:
    """[B, T] bool: real tokens after the prompt that the model did not write."""
    after_prompt = torch.zeros_like(rollout.response_mask)
    for row, length in enumerate(PROMPT_LENGTHS):
        after_prompt[row, length:] = True
    return after_prompt & rollout.attention_mask.bool() & ~rollout.response_mask
