"""Roles → pools → Ray actor options: the one place that decides where each stage runs.

With `cluster.pools` set, every actor of a role asks for a sliver of its pool's custom resource
(so it can only land on that pool's nodes) plus its GPUs and CPUs, and the learner ranks share a
placement group. Without pools (a laptop, a CPU machine) actors ask for no CPU at all and share
the machine's cores through torch's thread count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from tip_ray.config.pipeline import PipelineConfig
from tip_ray.pools import pool_resource

# How long an idle OpenMP thread of torch (GNU libgomp, in Linux wheels) spins before it sleeps.
# libgomp's default spins about 300,000 rounds between parallel regions: when a machine is busier
# than its cores, a stage's spinning threads take the time its other threads need. HF generate of
# the example's student on 2 cores beside 4 busy processes: 5.7 tokens/s by default, 12.1 at 1,000
# rounds (benchmarks/thread_contention.py). Alone the difference stays within run-to-run noise
# (44.9 vs 50.0 in one run, 51.9 vs 47.3 in another; vLLM's CPU engine 93.4 vs 94.5). Tiny models
# pay more, their parallel regions being short: the demo's stages ran 14-24% slower, yet its
# distillation took the same time (77 vs 76 s). A user's own GOMP_SPINCOUNT or OMP_WAIT_POLICY is
# left as it is.
OPENMP_SPIN_COUNT = "1000"


def thread_wait_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for stage actors: a short OpenMP spin unless the user chose one."""
    environ = os.environ if environ is None else environ
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ:
        return {}
    return {"GOMP_SPINCOUNT": OPENMP_SPIN_COUNT}


class Role(StrEnum):
    """The four stages a run places: the names of cluster.roles and of the actors."""

    ROLLOUT = "rollout"
    TEACHER = "teacher"
    SELECTOR = "selector"
    LEARNER = "learner"


@dataclass(frozen=True)
class RolePlacement:
    role: Role
    pool: str | None  # pool name, None when the run declares no pools
    resources: dict[str, float]
    num_gpus: float
    num_cpus: float
    num_threads: int


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_placement(config: PipelineConfig) -> dict[Role, RolePlacement]:
    cluster = config.cluster
    roles = cluster.roles.model_dump()
    cores = cluster.num_cpus or available_cores()
    plans = {}
    for role in Role:
        if cluster.pools is None:
            # One shared machine. With max_policy_lag 0 the stages take turns, so each may use
            # every core, except the learner ranks, which run at the same time and split them.
            # With a lag the next batch is sampled and scored while the learner trains: the two
            # sides split the cores (threads beyond the cores spin against each other; measured
            # on 2 cores: lag 1 ran at 0.31-0.33 of the in-process rate with every stage on 2).
            concurrent = 2 if config.train.max_policy_lag > 0 else 1
            share = max(1, cores // concurrent)
            threads = max(1, share // config.learner.num_ranks) if role is Role.LEARNER else share
            plans[role] = RolePlacement(role, None, {}, 0.0, 0.0, threads)
            continue
        pool_name = roles[role]
        pool = cluster.pools[pool_name]
        gpus, cpus = cluster.role_resources(role)
        threads = max(1, int(cpus)) if cpus else 1
        plans[role] = RolePlacement(
            role=role,
            pool=pool_name,
            resources=pool_resource(pool.resource),
            num_gpus=gpus,
            num_cpus=cpus,
            num_threads=threads,
        )
    return plans


def actor_options(plan: RolePlacement, *, max_restarts: int = 0, name: str | None = None) -> dict:
    options = {
        "num_cpus": plan.num_cpus,
        "num_gpus": plan.num_gpus,
        "resources": dict(plan.resources),
        "max_restarts": max_restarts,
        # A call in flight when its actor dies is redone on the restarted actor.
        "max_task_retries": max_restarts,
        # Stage actors load and save models all the time: their per-file progress bars would
        # bury the run's own progress line in the driver's output.
        "runtime_env": {"env_vars": {"HF_HUB_DISABLE_PROGRESS_BARS": "1", **thread_wait_env()}},
    }
    if name:
        options["name"] = name
    return options


def rollout_engine_bundles(config: PipelineConfig, plan: RolePlacement) -> list[dict[str, float]] | None:
    """Bundles of one rollout worker's placement group when its vLLM engine is tensor-parallel on
    GPUs (one GPU per engine worker, all on the rollout pool); None when the worker is one process."""
    backend = config.rollout.backend
    if backend.type != "vllm" or backend.tensor_parallel_size == 1 or plan.pool is None or not plan.num_gpus:
        return None
    size = backend.tensor_parallel_size
    bundle = {"GPU": 1.0, "CPU": plan.num_cpus / size}
    bundle.update(plan.resources)
    return [dict(bundle) for _ in range(size)]


def engine_actor_options(plan: RolePlacement, placement_group, *, max_restarts: int = 0,
                         name: str | None = None) -> dict:
    """A rollout actor that drives a tensor-parallel engine: it holds no GPU itself, and the
    engine's workers (Ray actors vLLM starts) take the group's bundles."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    options = actor_options(plan, max_restarts=max_restarts, name=name)
    options.update(num_gpus=0, num_cpus=0, resources={}, scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=placement_group, placement_group_capture_child_tasks=True))
    return options


def learner_placement_group(plan: RolePlacement, world_size: int):
    """A placement group holding one bundle per learner rank, packed on the learner's pool."""
    from ray.util.placement_group import placement_group

    bundle = {"CPU": plan.num_cpus}
    if plan.num_gpus:
        bundle["GPU"] = plan.num_gpus
    bundle.update(plan.resources)
    bundles = [{k: v for k, v in bundle.items() if v} or {"CPU": 0.001} for _ in range(world_size)]
    return placement_group(bundles, strategy="PACK")
