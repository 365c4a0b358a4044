"""The FSDP2 learner group as Ray actors: 2 ranks equal 1 rank, and all-token OPD on a fixed
batch drives the loss down; the selector's statistics use exactly the learner's weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config import load_pipeline
from tip_ray.pipeline.placement import plan_placement
from tip_ray.pipeline.prepare import prepare_run
from tip_ray.pipeline.batches import make_prompt_batch
from tip_ray.pipeline.stages import learner_settings, rollout_settings, scorer_settings, selector_settings
from tip_ray.data.prompts import PromptSampler
from tip_ray.weights import WeightVersion


@pytest.fixture(scope="module")
def fixed_batch(tiny_pair, demo_prompts, tmp_path_factory):
    """One all-token SelectedBatch from the real stages, and the prepared run it came from."""
    from tip_ray.rollout.worker import RolloutWorker
    from tip_ray.select.selector import Selector
    from tip_ray.teacher.scorer import TeacherScorer

    tmp = tmp_path_factory.mktemp("fixed")
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp / "run", selection={"rule": {"type": "all"}},
                            rollout={"prompts_per_step": 6})
    (tmp / "p.yaml").write_text(yaml.safe_dump(doc))
    prepared = prepare_run(load_pipeline(tmp / "p.yaml"), write=False)
    plans = plan_placement(prepared.config)
    sampler = PromptSampler(prepared.prompts, seed=0, shuffle=True)
    batch = make_prompt_batch(sampler, 0, 6)
    weights = WeightVersion(0)
    rollout = RolloutWorker(rollout_settings(prepared, plans["rollout"], 0)).generate(batch, weights)
    scored = TeacherScorer(scorer_settings(prepared, plans["teacher"], 0)).score(rollout)
    selector = Selector(selector_settings(prepared, plans["selector"], 0))
    selected, _ = selector.select(weights, scored)
    return prepared, plans, scored, selected


def start_group(ray, prepared, plans, world_size, *, micro_batch_size=None, lora=None, **optimizer):
    """Learner ranks for the prepared run; `optimizer` overrides learner.optimizer fields."""
    from tip_ray.learner.rank import LearnerRank

    settings = learner_settings(prepared, plans["learner"])
    learner = settings.learner.model_copy(update={
        "optimizer": settings.learner.optimizer.model_copy(update=optimizer),
        **({"micro_batch_size": micro_batch_size} if micro_batch_size else {}),
    })
    settings = dataclasses.replace(settings, world_size=world_size, num_threads=1, learner=learner,
                                   **({"lora": lora} if lora is not None else {}))
    ranks = [ray.remote(LearnerRank).options(num_cpus=0).remote(r, settings) for r in range(world_size)]
    host, port = ray.get(ranks[0].rendezvous_address.remote())
    ray.get([r.setup.remote(host, port) for r in ranks])
    return ranks


def stop_group(ray, ranks):
    ray.get([r.shutdown.remote() for r in ranks])
    for r in ranks:
        ray.kill(r)


def test_two_ranks_equal_one_rank(ray_local, fixed_batch):
    ray = ray_local
    prepared, plans, _, selected = fixed_batch
    results = {}
    for world in (1, 2):
        # micro_batch_size 2 also splits each rank's rows into several accumulation steps.
        ranks = start_group(ray, prepared, plans, world, micro_batch_size=2)
        results[world] = ray.get([r.train_step.remote(selected) for r in ranks])[0]
        stop_group(ray, ranks)
    one, two = results[1], results[2]
    assert one.num_selected == two.num_selected > 0
    assert abs(one.loss - two.loss) <= 1e-4 * abs(one.loss)
    assert abs(one.grad_norm - two.grad_norm) <= 1e-4 * abs(one.grad_norm)


def test_all_token_opd_loss_decreases_on_a_fixed_batch(ray_local, fixed_batch):
    ray = ray_local
    prepared, plans, _, selected = fixed_batch
    ranks = start_group(ray, prepared, plans, 2, lr=1e-2, warmup_steps=0, schedule="constant")
    losses = [ray.get([r.train_step.remote(selected) for r in ranks])[0].loss for _ in range(6)]
    stop_group(ray, ranks)
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_selector_statistics_use_the_learners_weights(ray_local, fixed_batch):
    """With max_policy_lag 0 the selector computes h and delta with the weights the learner has."""
    from tip_ray.learner.export import export_hf
    from tip_ray.select.selector import Selector

    ray = ray_local
    prepared, plans, scored, selected = fixed_batch
    ranks = start_group(ray, prepared, plans, 2, lr=1e-2)
    for _ in range(2):
        ray.get([r.train_step.remote(selected) for r in ranks])
    state = ray.get([r.full_state_dict.remote() for r in ranks])[0]
    stop_group(ray, ranks)
    handle = WeightVersion(2, refs=(ray.put(state),))
    selector = ray.remote(Selector).options(num_cpus=0).remote(selector_settings(prepared, plans["selector"], 0))
    remote_stats = ray.get(selector.statistics.remote(handle, scored))
    ray.kill(selector)

    # Independent reference: the learner's weights in a fresh HF model, float64, full softmax.
    from transformers import AutoModelForCausalLM

    folder = export_hf(state, prepared.student_path, prepared.run_dir.parent / "learner_weights")
    student = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    teacher = AutoModelForCausalLM.from_pretrained(prepared.teacher_path, dtype=torch.float64).eval()
    rollout = scored.rollout
    with torch.no_grad():
        s_logits = student(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits
        t_logits = teacher(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits
    rows, cols = rollout.response_mask.nonzero(as_tuple=True)
    ls = s_logits[rows, cols - 1].log_softmax(-1)
    lt = t_logits[rows, cols - 1].log_softmax(-1)
    ps = ls.exp()
    entropy = -(ps * ls).sum(-1) / torch.log(torch.tensor(float(ls.shape[-1]), dtype=torch.float64))
    reverse_kl = (ps * (ls - lt)).sum(-1)
    assert torch.allclose(remote_stats.entropy.double(), entropy, atol=1e-5)
    assert torch.allclose(remote_stats.reverse_kl.double(), reverse_kl, atol=1e-5)
    # And the original weights give different statistics: the check above can fail.
    original = AutoModelForCausalLM.from_pretrained(prepared.student_path, dtype=torch.float64).eval()
    with torch.no_grad():
        lo = original(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits[rows, cols - 1]
    assert not torch.allclose(lo.log_softmax(-1), ls, atol=1e-3)
