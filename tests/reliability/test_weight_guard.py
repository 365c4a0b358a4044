"""An update that would make the weights non-finite (finite inputs, loss and gradients, but a
learning rate large enough to overflow) is refused whole: weights, AdamW moments and step count
stay as they were, the step is skipped and counted, and a run with such a learning rate stops
with the bad-steps message instead of publishing non-finite weights to its rollout workers."""

from __future__ import annotations

import math

import pytest
import torch

from tests.reliability.conftest import read_rows, reliability_doc, write_pipeline
from tests.reliability.test_bad_numbers import selected_for, stages, weights_of  # noqa: F401 (fixture)


def optimizer_state(learner) -> dict[int, dict[str, torch.Tensor]]:
    return {i: {k: v.clone() for k, v in learner.optimizer.state[p].items()}
            for i, p in enumerate(learner.model.parameters()) if p in learner.optimizer.state}


def set_lr(learner, lr: float) -> None:
    for group in learner.optimizer.param_groups:
        group["lr"] = lr


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("huge_lr", [1e39, math.inf])
def test_update_to_nonfinite_weights_is_refused_whole(stages, huge_lr):  # noqa: F811
    learner = stages[3]
    batch = selected_for(stages, [(5, 6, 7, 2), (8, 9, 2)])
    lr = learner.optimizer.param_groups[0]["lr"]
    first = learner.train_step(batch)  # a normal update, so that AdamW has moments to protect
    assert not first.skipped and "nonfinite_weights" not in first.extra
    weights, moments, step = weights_of(learner), optimizer_state(learner), learner.step
    assert moments and all(torch.isfinite(v).all() for v in weights.values())

    set_lr(learner, huge_lr)
    try:
        refused = learner.train_step(batch)
    finally:
        set_lr(learner, lr)
    # The inputs, loss and gradient were finite: only the weights would not have been.
    assert math.isfinite(refused.loss) and math.isfinite(refused.grad_norm)
    assert refused.skipped and refused.extra["nonfinite_weights"] > 0 and refused.step == step
    assert learner.step == step
    assert same(weights_of(learner), weights) and same_state(optimizer_state(learner), moments)

    applied = learner.train_step(batch)  # the learner goes on normally afterwards
    assert not applied.skipped and learner.step == step + 1
    assert not same(weights_of(learner), weights)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def test_guard_counts_on_real_tensors():
    from tip_ray.learner.guard import count_nonfinite_weights, snapshot_update

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert count_nonfinite_weights(model) == 0
    before = snapshot_update(model, optimizer)  # no optimizer state yet
    original = model.weight.detach().clone()
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    with torch.no_grad():
        model.weight[0, 0] = math.nan
        model.bias[1] = -math.inf
    assert count_nonfinite_weights(model) == 2
    before.restore(optimizer)
    assert torch.equal(model.weight, original) and not optimizer.state and count_nonfinite_weights(model) == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_run_with_an_overflowing_learning_rate_stops_cleanly(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.faults import TooManyBadSteps
    from tip_ray.pipeline.supervisor import run_pipeline

    run_dir = tmp_path / "run"
    doc = reliability_doc(tiny_pair, demo_prompts, run_dir, name="overflow",
                          learner={"optimizer": {"lr": 1e39, "warmup_steps": 0}},
                          train={"steps": 4, "max_consecutive_bad_steps": 2, "max_policy_lag": 1},
                          checkpoint={"every_steps": 1, "keep_last": 1, "export_hf": False})
    with pytest.raises(TooManyBadSteps, match="updated weights"):
        run_pipeline(load_pipeline(write_pipeline(tmp_path, doc)))
    rows = read_rows(run_dir)
    # Updates 1 and 2 were refused (the rollout workers kept the finite weights and went on
    # sampling: no crash there); the learner applied none, and the stop left no checkpoint of
    # step 2 (step_1 holds the unchanged weights).
    assert [r["batch_id"] for r in rows] == [0, 1] and [r["step"] for r in rows] == [0, 0]
    assert all(r["skipped"] and r["nonfinite_weights"] > 0 and r["nonfinite_inputs"] == 0 for r in rows)
    assert rows[-1]["skipped_steps"] == 2
    assert not (run_dir / "checkpoints" / "step_2").exists()
