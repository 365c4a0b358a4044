"""Sharded learner checkpoints with real FSDP2 ranks (gloo): a 2-rank group restored from its
checkpoint continues exactly where it stopped (weights, AdamW moments, LR schedule, step), and
the same shards load into a group of another size."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from tests.pipeline_doc import tiny_pipeline_doc


@pytest.fixture(scope="module")
def fixed(tiny_pair, demo_prompts, tmp_path_factory):
    """A real SelectedBatch (all tokens) and the settings of a learner, built in this process."""
    from tip_ray.config import load_pipeline
    from tip_ray.data.prompts import PromptSampler
    from tip_ray.pipeline.placement import plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.batches import make_prompt_batch
    from tip_ray.pipeline.stages import learner_settings, rollout_settings, scorer_settings, selector_settings
    from tip_ray.rollout.worker import RolloutWorker
    from tip_ray.select.selector import Selector
    from tip_ray.teacher.scorer import TeacherScorer
    from tip_ray.weights import WeightVersion

    tmp = tmp_path_factory.mktemp("learner_ckpt")
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp / "run", selection={"rule": {"type": "all"}},
                            learner={"num_ranks": 2, "micro_batch_size": 2,
                                     "optimizer": {"lr": 1e-2, "warmup_steps": 1, "schedule": "cosine"}},
                            train={"steps": 6, "seed": 0})
    (tmp / "p.yaml").write_text(yaml.safe_dump(doc))
    prepared = prepare_run(load_pipeline(tmp / "p.yaml"), write=False)
    plans = plan_placement(prepared.config)
    batch = make_prompt_batch(PromptSampler(prepared.prompts, 0, True), 0, 4)
    weights = WeightVersion(0)
    rollout = RolloutWorker(rollout_settings(prepared, plans["rollout"], 0)).generate(batch, weights)
    scored = TeacherScorer(scorer_settings(prepared, plans["teacher"], 0)).score(rollout)
    selected, _ = Selector(selector_settings(prepared, plans["selector"], 0)).select(weights, scored)
    settings = dataclasses.replace(learner_settings(prepared, plans["learner"]), num_threads=1)
    return settings, selected, tmp


def start_group(ray, settings, world_size: int):
    from tip_ray.learner.rank import LearnerRank

    group_settings = dataclasses.replace(settings, world_size=world_size)
    ranks = [ray.remote(LearnerRank).options(num_cpus=0).remote(r, group_settings) for r in range(world_size)]
    host, port = ray.get(ranks[0].rendezvous_address.remote())
    ray.get([r.setup.remote(host, port) for r in ranks])
    return ranks


def stop_group(ray, ranks) -> None:
    ray.get([r.shutdown.remote() for r in ranks])
    for r in ranks:
        ray.kill(r)


def step(ray, ranks, batch):
    return ray.get([r.train_step.remote(batch) for r in ranks])[0]


def full_weights(ray, ranks) -> dict[str, torch.Tensor]:
    return ray.get([r.full_state_dict.remote() for r in ranks])[0]


@pytest.mark.slow  # five learner actors (~1 min); the runs in the default suite use one rank
@pytest.mark.timeout(600)
def test_sharded_checkpoint_restores_exactly_and_reshards(ray_local, fixed):
    ray = ray_local
    settings, batch, tmp = fixed
    folder = tmp / "ckpt"

    group = start_group(ray, settings, 2)
    step(ray, group, batch)
    step(ray, group, batch)
    files = ray.get([r.save_checkpoint.remote(str(folder)) for r in group])
    saved = full_weights(ray, group)
    after_save = [step(ray, group, batch) for _ in range(2)]
    continued = full_weights(ray, group)
    stop_group(ray, group)
    # Each rank wrote its own shard and its own small state file.
    assert "rank_0.pt" in files[0] and "rank_1.pt" in files[1]
    assert {"shards/__0_0.distcp", "shards/__1_0.distcp"} <= set(files[0]) | set(files[1])

    restored = start_group(ray, settings, 2)
    assert ray.get([r.load_checkpoint.remote(str(folder)) for r in restored]) == [2, 2]
    again = [step(ray, restored, batch) for _ in range(2)]
    resumed = full_weights(ray, restored)
    stop_group(ray, restored)
    # Bit for bit: same losses, gradient norms, learning rates (the schedule went on) and weights.
    assert [(r.step, r.loss, r.grad_norm, r.lr) for r in again] == [(r.step, r.loss, r.grad_norm, r.lr) for r in after_save]
    assert all(torch.equal(continued[k], resumed[k]) for k in continued)

    single = start_group(ray, settings, 1)
    assert ray.get(single[0].load_checkpoint.remote(str(folder))) == 2
    resharded = full_weights(ray, single)
    stop_group(ray, single)
    assert all(torch.equal(saved[k], resharded[k]) for k in saved)
