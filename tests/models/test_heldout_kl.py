"""The example's held-out measure and its per-stage breakdown, on tiny models and plain rows."""

from __future__ import annotations

import math

import pytest
import torch

from gguf_writer import tiny_llama
from tip_ray.models.cache import torch_threads
from tip_ray.eval.heldout_kl import reverse_kl_on
from tip_ray.models.heal import Sample
from tip_ray.pipeline.breakdown import stage_seconds


def _reference(student, teacher, samples) -> float:
    """KL(student || teacher) per response token, one sequence at a time, in float64."""
    total, count = 0.0, 0
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        with torch.no_grad():
            ps = torch.softmax(student(ids).logits[0].double(), -1)
            pt = torch.softmax(teacher(ids).logits[0].double(), -1)
        for t in range(len(s.prompt_ids) - 1, ids.shape[1] - 1):
            total += sum(float(a) * (math.log(float(a)) - math.log(float(b))) for a, b in zip(ps[t], pt[t]) if a > 0)
            count += 1
    return total / count


def test_reverse_kl_on_samples_matches_a_float64_reference():
    with torch_threads(1):
        student, teacher = tiny_llama(num_layers=1, seed=1), tiny_llama(num_layers=2, seed=2)
        samples = [Sample([1, 40, 41], [50, 51, 2]), Sample([1, 60], [70, 71, 72, 73]), Sample([1], [2])]
        total, count = reverse_kl_on(student, teacher, samples, pad_id=0, batch_size=2)
        assert count == 3 + 4 + 1
        assert total / count == pytest.approx(_reference(student, teacher, samples), rel=1e-6)
        same, _ = reverse_kl_on(teacher, teacher, samples, pad_id=0)
        assert abs(same) < 1e-9


def test_stage_breakdown_splits_a_step():
    row = {"response_tokens": 100, "rollout_tokens_per_s": 50.0, "teacher_tokens_per_s": 200.0,
           "selector_tokens_per_s": 400.0, "learner_seconds": 3.0, "weight_sync_seconds": 0.5, "step_seconds": 7.0}
    seconds = stage_seconds(row)
    assert seconds == {"rollout": 2.0, "teacher": 0.5, "selector": 0.25, "learner": 3.0, "weight_sync": 0.5,
                       "step": 7.0, "overhead": 0.75}
    assert stage_seconds({**row, "rollout_tokens_per_s": float("nan")})["rollout"] == 0.0
