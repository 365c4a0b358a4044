"""The learner moves each batch onto its own device (the selector hands batches over on the CPU)."""

from __future__ import annotations

import dataclasses

import torch

from tip_ray.learner.device import batch_to_device
from tip_ray.records import SelectedBatch, SelectionSummary
from tip_ray.tip import TeacherHidden, TopKLogProbs


def _batch(teacher) -> SelectedBatch:
    summary = SelectionSummary(batch_id=0, policy_version=0, teacher_seconds=0.0, num_response_tokens=3, num_selected=2,
                               mean_entropy=0.5, mean_reverse_kl=0.1, quadrants={}, approximate=False,
                               selector_version=0, seconds=0.0)
    return SelectedBatch(
        batch_id=0, policy_version=0, input_ids=torch.ones(1, 4, dtype=torch.int64),
        attention_mask=torch.ones(1, 4, dtype=torch.int64), positions=torch.tensor([[0, 1], [0, 2]]),
        weights=torch.ones(2), sampled_tokens=torch.tensor([3, 4]), teacher=teacher,
        teacher_sampled_logprobs=torch.zeros(2), summary=summary,
    )


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from _tensors(getattr(value, field.name))


def test_every_tensor_of_the_batch_moves_and_values_are_kept():
    meta = torch.device("meta")  # a second device that exists on every machine
    for teacher in (TeacherHidden(torch.randn(2, 5)),
                    TopKLogProbs(indices=torch.tensor([[1], [2]]), logprobs=torch.zeros(2, 1), tail_logprob=torch.zeros(2))):
        original = _batch(teacher)
        moved = batch_to_device(original, meta)
        tensors = list(_tensors(moved))
        assert len(tensors) == 6 + len(dataclasses.fields(teacher))
        assert all(t.device == meta for t in tensors)
        assert moved.summary is original.summary and moved.summary.num_response_tokens == 3


def test_a_batch_already_on_the_device_is_returned_as_is():
    batch = _batch(TeacherHidden(torch.randn(2, 5)))
    assert batch_to_device(batch, torch.device("cpu")) is batch
