"""Starting and stopping the stage actors of one run attempt: rollout workers, teacher scorers,
the selector and the learner ranks, each placed on its role's pool (pipeline.placement)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import placement_group

from tip_ray.pipeline.placement import (
    Role,
    actor_options,
    engine_actor_options,
    learner_placement_group,
    plan_placement,
    rollout_engine_bundles,
)
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.stages import learner_settings, rollout_settings, selector_settings, teacher_stage
from tip_ray.pipeline.teacher_routing import scorer_plan


@dataclass
class StageActors:
    rollouts: list[Any]
    scorers: list[Any]
    selector: Any
    learners: list[Any]
    placement_groups: list[Any] = field(default_factory=list)
    all: list[Any] = field(default_factory=list)
    names: dict[str, Any] = field(default_factory=dict)  # "rollout-0" -> handle (restartable ones)
    scorer_teacher: list[int] = field(default_factory=list)  # teacher index of each scorer


class Incarnation:
    """Mixed into restartable stage classes: an id that changes when Ray restarts the actor."""

    def incarnation(self) -> str:
        if not hasattr(self, "_incarnation_id"):
            self._incarnation_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return self._incarnation_id


def tracked(cls: type) -> type:
    """`cls` with an incarnation() method; same class name, so Ray's tools show the stage's name."""
    return type(cls.__name__, (Incarnation, cls), {"__qualname__": cls.__qualname__})


def start_actors(prepared: PreparedRun, max_restarts: int, name_prefix: str = "") -> StageActors:
    """Start every stage's actors. Rollout, teacher and selector actors are restarted by Ray up to
    `max_restarts` times; learner ranks are not (a torch.distributed group cannot take a new
    member mid-run: the run resumes from its last checkpoint instead). With `name_prefix`, the
    actors are named `<prefix><role>-<i>` (for `ray.get_actor`, dashboards and fault drills)."""
    from tip_ray.learner.rank import LearnerRank
    from tip_ray.rollout.worker import RolloutWorker
    from tip_ray.select.selector import Selector
    config = prepared.config
    plans = plan_placement(config)

    def named(role: Role, i: int) -> str | None:
        return f"{name_prefix}{role}-{i}" if name_prefix else None

    groups = []  # placement groups this run created, removed at shutdown
    rollouts = []
    engine_bundles = rollout_engine_bundles(config, plans[Role.ROLLOUT])
    for i in range(config.rollout.num_workers):
        options = actor_options(plans[Role.ROLLOUT], max_restarts=max_restarts, name=named(Role.ROLLOUT, i))
        if engine_bundles is not None:  # a tensor-parallel vLLM engine: its workers take the bundles
            group = placement_group(engine_bundles, strategy="STRICT_PACK")
            ray.get(group.ready(), timeout=config.train.stage_timeout_s)
            groups.append(group)
            options = engine_actor_options(plans[Role.ROLLOUT], group, max_restarts=max_restarts, name=named(Role.ROLLOUT, i))
        rollouts.append(ray.remote(tracked(RolloutWorker)).options(**options)
                        .remote(rollout_settings(prepared, plans[Role.ROLLOUT], i)))
    scorers, scorer_teacher = [], []
    for t, teacher, _replica in scorer_plan(prepared):
        # Hugging Face, or a vLLM engine when teacher.backend.type is vllm (top-k signals only).
        index = len(scorers)
        scorer_cls, args, kwargs = teacher_stage(prepared, plans[Role.TEACHER], index, teacher)
        scorers.append(
            ray.remote(tracked(scorer_cls))
            .options(**actor_options(plans[Role.TEACHER], max_restarts=max_restarts, name=named(Role.TEACHER, index)))
            .remote(*args, **kwargs)
        )
        scorer_teacher.append(t)
    selector = (
        ray.remote(tracked(Selector))
        .options(**actor_options(plans[Role.SELECTOR], max_restarts=max_restarts, name=named(Role.SELECTOR, 0)))
        .remote(selector_settings(prepared, plans[Role.SELECTOR], 0))
    )
    pg = None
    learner_opts = actor_options(plans[Role.LEARNER])
    if plans[Role.LEARNER].pool is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        pg = learner_placement_group(plans[Role.LEARNER], config.learner.num_ranks)
        ray.get(pg.ready(), timeout=config.train.stage_timeout_s)
        groups.append(pg)
    settings = learner_settings(prepared, plans[Role.LEARNER])
    learners = []
    for rank in range(config.learner.num_ranks):
        opts = dict(learner_opts)
        if name_prefix:
            opts["name"] = named(Role.LEARNER, rank)
        if pg is not None:
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=rank
            )
            opts["resources"] = {}  # the bundle already reserved the pool resource
        learners.append(ray.remote(LearnerRank).options(**opts).remote(rank, settings))
    names = {f"{Role.ROLLOUT}-{i}": a for i, a in enumerate(rollouts)}
    names.update({f"{Role.TEACHER}-{i}": a for i, a in enumerate(scorers)})
    names[f"{Role.SELECTOR}-0"] = selector
    return StageActors(
        rollouts=rollouts,
        scorers=scorers,
        scorer_teacher=scorer_teacher,
        selector=selector,
        learners=learners,
        placement_groups=groups,
        all=[*rollouts, *scorers, selector, *learners],
        names=names,
    )


def shutdown_actors(actors: StageActors | None) -> None:
    if actors is None:
        return
    for actor in actors.all:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:
            pass
    from ray.util.placement_group import remove_placement_group

    for group in actors.placement_groups:
        remove_placement_group(group)
