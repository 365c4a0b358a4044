"""The rollout backend interface: what a student sampler must offer the pipeline.

A backend samples responses for token-id prompts and reports the log-prob of every sampled
token under the unmodified model distribution (temperature 1, no top-p), so that the numbers
mean the same whichever backend produced them. Hugging Face `generate` and vLLM implement it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import torch

from tip_ray.broadcast import GroupAddress


@dataclass(frozen=True)
class SamplingRequest:
    temperature: float  # 0 = greedy
    top_p: float
    max_new_tokens: int
    n: int  # samples per prompt
    seed: int  # makes sampling reproducible for a given batch


@dataclass(frozen=True)
class Sample:
    prompt_index: int  # which prompt of the request this sample answers
    response_ids: tuple[int, ...]  # sampled tokens, the end-of-sequence token included if emitted
    logprobs: tuple[float, ...]  # log P_student(token) of each sampled token, same length
    # Multi-turn trajectories interleave environment tokens (tool output, template glue) with the
    # model's: True where the model wrote the token. None means every response token is sampled.
    model_written: tuple[bool, ...] | None = None


class RolloutBackend(Protocol):
    """A student replica that samples and can take new weights in place."""

    def generate(
        self, prompts: Sequence[Sequence[int]], request: SamplingRequest
    ) -> list[Sample]:
        """Samples grouped by prompt: n for prompt 0, then n for prompt 1, ..."""
        ...

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Replace the weights with a full (gathered) state dict, without restarting."""
        ...

    # Weight broadcast (rollout.weight_sync: broadcast): group members this backend adds, joining
    # learner rank 0's group, and taking one broadcast of the full weights in place.
    broadcast_ranks: int

    def join_broadcast_group(self, address: GroupAddress, rank_offset: int) -> list[int]:
        ...

    def receive_broadcast(self) -> int:
        ...

    def close(self) -> None:
        ...
