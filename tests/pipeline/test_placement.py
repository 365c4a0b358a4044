"""Roles → pools → what each actor asks Ray for: pool defaults, per-role overrides, and the
placement group of a tensor-parallel vLLM rollout engine."""

from __future__ import annotations

import pytest

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config import ConfigError
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.pipeline.placement import plan_placement, rollout_engine_bundles

POOLS = {"teacher": {"resource": "teacher_pool", "gpus_per_actor": 1, "cpus_per_actor": 4},
         "student": {"resource": "student_pool", "gpus_per_actor": 1, "cpus_per_actor": 8}}


def config(tiny_pair, demo_prompts, tmp_path, cluster=None, rollout=None) -> PipelineConfig:
    sections = {"cluster": {"address": "auto", "pools": POOLS, **(cluster or {})}}
    if rollout:
        sections["rollout"] = rollout
    return PipelineConfig.model_validate(tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path, **sections))


def test_a_role_can_ask_for_other_gpus_than_its_pool(tiny_pair, demo_prompts, tmp_path):
    """A tensor-parallel-4 teacher next to a one-GPU selector on the same pool."""
    plans = plan_placement(config(tiny_pair, demo_prompts, tmp_path,
                                  cluster={"resources": {"teacher": {"gpus_per_actor": 4, "cpus_per_actor": 16}}}))
    assert (plans["teacher"].num_gpus, plans["teacher"].num_cpus, plans["teacher"].num_threads) == (4, 16, 16)
    assert (plans["selector"].num_gpus, plans["selector"].num_cpus) == (1, 4)  # the pool's defaults
    assert plans["teacher"].resources == plans["selector"].resources  # same pool marker
    assert (plans["learner"].num_gpus, plans["learner"].num_cpus) == (1, 8)


def test_per_role_resources_need_pools(tiny_pair, demo_prompts, tmp_path):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path,
                            cluster={"address": "local", "resources": {"selector": {"gpus_per_actor": 1}}})
    with pytest.raises(ValueError, match=r"resources.selector sets per-actor resources, which only apply with cluster.pools"):
        PipelineConfig.model_validate(doc)


def test_tensor_parallel_rollout_engine_gets_one_bundle_per_gpu(tiny_pair, demo_prompts, tmp_path):
    vllm = {"backend": {"type": "vllm", "tensor_parallel_size": 2}}
    c = config(tiny_pair, demo_prompts, tmp_path, rollout=vllm,
               cluster={"resources": {"rollout": {"gpus_per_actor": 2}}})
    plans = plan_placement(c)
    bundles = rollout_engine_bundles(c, plans["rollout"])
    assert bundles is not None and len(bundles) == 2
    for bundle in bundles:
        assert bundle["GPU"] == 1.0 and bundle["CPU"] == 4.0  # the worker's 8 CPUs split over its 2 GPUs
        assert {k: v for k, v in bundle.items() if k not in ("GPU", "CPU")} == plans["rollout"].resources
    # One process, no group: Hugging Face, or a single-GPU engine.
    assert rollout_engine_bundles(config(tiny_pair, demo_prompts, tmp_path), plans["rollout"]) is None
    single = config(tiny_pair, demo_prompts, tmp_path, rollout={"backend": {"type": "vllm"}})
    assert rollout_engine_bundles(single, plan_placement(single)["rollout"]) is None


def test_tensor_parallel_size_must_match_the_rollout_gpus(tiny_pair, demo_prompts, tmp_path):
    with pytest.raises(ValueError, match=r"tensor_parallel_size is 4 but each rollout worker gets 1 GPU"):
        config(tiny_pair, demo_prompts, tmp_path, rollout={"backend": {"type": "vllm", "tensor_parallel_size": 4}})


def test_the_error_names_the_file_and_the_fix(tiny_pair, demo_prompts, tmp_path):
    import yaml

    from tip_ray.config import load_pipeline

    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path, cluster={"address": "auto", "pools": POOLS},
                            rollout={"backend": {"type": "vllm", "tensor_parallel_size": 4}})
    path = tmp_path / "tp.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"(?s)tp.yaml.*set it to 4"):
        load_pipeline(path)


@pytest.mark.parametrize("lag, ranks, expected", [
    (0, 1, {"rollout": 8, "teacher": 8, "selector": 8, "learner": 8}),  # stages take turns
    (0, 2, {"rollout": 8, "teacher": 8, "selector": 8, "learner": 4}),  # ranks run together
    (1, 1, {"rollout": 4, "teacher": 4, "selector": 4, "learner": 4}),  # sampling overlaps training
    (1, 2, {"rollout": 4, "teacher": 4, "selector": 4, "learner": 2}),
])
def test_one_machine_threads_follow_what_runs_at_the_same_time(tiny_pair, demo_prompts, tmp_path, lag, ranks, expected):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path, cluster={"address": "local", "num_cpus": 8},
                            learner={"num_ranks": ranks, "micro_batch_size": 4},
                            train={"steps": 3, "max_policy_lag": lag})
    plans = plan_placement(PipelineConfig.model_validate(doc))
    assert {role: plan.num_threads for role, plan in plans.items()} == expected


def test_stage_actors_spin_briefly_unless_the_user_chose(ray_local, monkeypatch):
    """Stage actors start with a short OpenMP spin (GOMP_SPINCOUNT), seen inside a real actor;
    a user's own GOMP_SPINCOUNT or OMP_WAIT_POLICY wins."""
    import os

    from tip_ray.pipeline.placement import OPENMP_SPIN_COUNT, RolePlacement, actor_options, thread_wait_env

    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    assert thread_wait_env() == {"GOMP_SPINCOUNT": OPENMP_SPIN_COUNT}
    assert thread_wait_env({"OMP_WAIT_POLICY": "PASSIVE"}) == {}
    assert thread_wait_env({"GOMP_SPINCOUNT": "infinite"}) == {}

    @ray_local.remote
    class Probe:
        def env(self, name):
            return os.environ.get(name)

    plan = RolePlacement("rollout", None, {}, 0.0, 0.0, 1)
    probe = Probe.options(**actor_options(plan)).remote()
    assert ray_local.get(probe.env.remote("GOMP_SPINCOUNT")) == OPENMP_SPIN_COUNT
    ray_local.kill(probe)
