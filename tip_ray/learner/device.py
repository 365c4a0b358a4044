"""Move a SelectedBatch onto the learner's device (the selector hands batches over on the CPU)."""

from __future__ import annotations

from dataclasses import replace

import torch

from tip_ray.records import SelectedBatch
from tip_ray.tip.signal import signal_to


def batch_to_device(batch: SelectedBatch, device: torch.device) -> SelectedBatch:
    """The same batch with every tensor on ``device``; the batch itself when already there."""
    if batch.input_ids.device == device and batch.positions.device == device:
        return batch
    return replace(
        batch,
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        positions=batch.positions.to(device),
        weights=batch.weights.to(device),
        sampled_tokens=batch.sampled_tokens.to(device),
        teacher=signal_to(batch.teacher, device),
        teacher_sampled_logprobs=batch.teacher_sampled_logprobs.to(device),
    )
