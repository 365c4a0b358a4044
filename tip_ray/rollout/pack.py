"""Pack backend samples into a right-padded RolloutBatch (prompt, then response, then padding).

A multi-turn sample's response interleaves model-written and environment tokens; only the
model-written ones enter ``response_mask``, so nothing downstream scores, selects or trains on
tool output or template glue.
"""

from __future__ import annotations

from typing import Sequence

import torch

from tip_ray.records import PromptBatch, RolloutBatch
from tip_ray.rollout.backend import Sample


def written_mask(sample: Sample) -> torch.Tensor:
    """[r] bool: True where the model wrote the response token (all of them for a single turn)."""
    r = len(sample.response_ids)
    if sample.model_written is None:
        return torch.ones(r, dtype=torch.bool)
    if len(sample.model_written) != r or len(sample.logprobs) != r:
        raise ValueError(
            f"rollout sample of prompt {sample.prompt_index}: {r} response ids, {len(sample.model_written)} "
            f"model_written flags and {len(sample.logprobs)} log-probs; all three must have the same length"
        )
    return torch.tensor(sample.model_written, dtype=torch.bool)


def pack_rollout(
    prompts: PromptBatch,
    samples: Sequence[Sample],
    *,
    policy_version: int,
    pad_token_id: int,
    texts: Sequence[str],
    seconds: float,
    environment: dict[str, float] | None = None,
) -> RolloutBatch:
    lengths = [len(prompts.prompt_ids[s.prompt_index]) + len(s.response_ids) for s in samples]
    width = max(max(lengths), 1)
    rows = len(samples)
    input_ids = torch.full((rows, width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((rows, width), dtype=torch.long)
    response_mask = torch.zeros((rows, width), dtype=torch.bool)
    for row, sample in enumerate(samples):
        prompt = prompts.prompt_ids[sample.prompt_index]
        p, r = len(prompt), len(sample.response_ids)
        input_ids[row, :p] = torch.tensor(prompt, dtype=torch.long)
        if r:
            input_ids[row, p : p + r] = torch.tensor(sample.response_ids, dtype=torch.long)
            response_mask[row, p : p + r] = written_mask(sample)
        attention[row, : p + r] = 1
    return RolloutBatch(
        batch_id=prompts.batch_id,
        policy_version=policy_version,
        input_ids=input_ids,
        attention_mask=attention,
        response_mask=response_mask,
        prompt_index=torch.tensor([s.prompt_index for s in samples], dtype=torch.long),
        response_texts=tuple(texts),
        seconds=seconds,
        prompt_rows=prompts.prompt_rows,
        environment=dict(environment or {}),
    )
