"""The controller: drives one distillation run over Ray actors.

    prompts ─► Rollout ─► q ─► Score ─► q ─► Select ─► q ─► Learner(FSDP ranks) ─► step v+1
                 ▲                                                         │
                 └──────────────── weight sync (policy version) ◄──────────┘

The controller never touches payloads: it chains object references from stage to stage (Ray
moves the data between the actors directly) and keeps, per update batch, a bounded queue of the
references in flight. With `max_policy_lag` L, the batch consumed at step s is sampled with
weights of version >= s - L: batch b is sampled with version max(0, b - L) and launched as soon
as that version is published, so up to L + 1 batches are in flight while the learner works.

Weight sync (rollout.weight_sync): the gathered weights always go into the object store once
(the selector, evaluation and restarted actors read them there); with `broadcast`, learner rank 0
also sends them straight to every rollout engine over a group of its own (NCCL or gloo), and the
engines mark that version as held, so their next call loads nothing.

Faults: rollout, teacher and selector actors are restarted by Ray (train.max_actor_restarts) and
a call they had in flight is retried on the new actor. Every stage call carries the weight
version it must use (see tip_ray.weights), so a restarted actor catches up by itself and a
retried call is redone with the same weights and the same seed: the batch is neither lost nor
trained twice. Each actor reports an incarnation id after its calls, so restarts are counted.
A stage that dies for good (a learner rank, or an actor out of restarts) raises StageDied at
once, naming the stage; one that does not answer raises StageTimeout, naming it too.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import placement_group

from tip_ray.broadcast import GroupAddress
from tip_ray.pipeline.batches import split_prompts
from tip_ray.pipeline.faults import PolicyLagExceeded
from tip_ray.pipeline.placement import (
    actor_options,
    engine_actor_options,
    learner_placement_group,
    plan_placement,
    rollout_engine_bundles,
)
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.stages import learner_settings, rollout_settings, selector_settings, teacher_stage
from tip_ray.pipeline.waits import wait_all, wait_ready_refs, wait_stage
from tip_ray.records import PromptBatch
from tip_ray.weights import WeightVersion

log = logging.getLogger("tip_ray")


@dataclass
class InFlight:
    """The references of one update batch as it moves through the stages."""

    batch: PromptBatch
    rollout_refs: list[Any]
    scored_refs: list[Any]
    selected_ref: Any
    summary_ref: Any
    launched_at: float
    weights_version: int
    incarnation_refs: list[tuple[str, Any]] = field(default_factory=list)  # (actor name, ref)


class RefQueue:
    """A bounded FIFO of in-flight batches (object references only, never payloads)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: deque[InFlight] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def put(self, item: InFlight) -> None:
        if self.full():
            raise RuntimeError(f"queue over capacity {self.capacity}: the controller launched too early")
        self._items.append(item)

    def pop(self) -> InFlight:
        return self._items.popleft()

    def drain(self) -> list[InFlight]:
        items = list(self._items)
        self._items.clear()
        return items


@dataclass
class StageActors:
    rollouts: list[Any]
    scorers: list[Any]
    selector: Any
    learners: list[Any]
    placement_groups: list[Any] = field(default_factory=list)
    all: list[Any] = field(default_factory=list)
    names: dict[str, Any] = field(default_factory=dict)  # "rollout-0" -> handle (restartable ones)


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

    def named(role: str, i: int) -> str | None:
        return f"{name_prefix}{role}-{i}" if name_prefix else None

    groups = []  # placement groups this run created, removed at shutdown
    rollouts = []
    engine_bundles = rollout_engine_bundles(config, plans["rollout"])
    for i in range(config.rollout.num_workers):
        options = actor_options(plans["rollout"], max_restarts=max_restarts, name=named("rollout", i))
        if engine_bundles is not None:  # a tensor-parallel vLLM engine: its workers take the bundles
            group = placement_group(engine_bundles, strategy="STRICT_PACK")
            ray.get(group.ready(), timeout=config.train.stage_timeout_s)
            groups.append(group)
            options = engine_actor_options(plans["rollout"], group, max_restarts=max_restarts, name=named("rollout", i))
        rollouts.append(ray.remote(tracked(RolloutWorker)).options(**options)
                        .remote(rollout_settings(prepared, plans["rollout"], i)))
    scorers = []
    for i in range(config.teacher.num_scorers):
        # Hugging Face, or a vLLM engine when teacher.backend is vllm (top-k signals only).
        scorer_cls, args, kwargs = teacher_stage(prepared, plans["teacher"], i)
        scorers.append(
            ray.remote(tracked(scorer_cls))
            .options(**actor_options(plans["teacher"], max_restarts=max_restarts, name=named("teacher", i)))
            .remote(*args, **kwargs)
        )
    selector = (
        ray.remote(tracked(Selector))
        .options(**actor_options(plans["selector"], max_restarts=max_restarts, name=named("selector", 0)))
        .remote(selector_settings(prepared, plans["selector"], 0))
    )
    pg = None
    learner_opts = actor_options(plans["learner"])
    if plans["learner"].pool is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        pg = learner_placement_group(plans["learner"], config.learner.num_ranks)
        ray.get(pg.ready(), timeout=config.train.stage_timeout_s)
        groups.append(pg)
    settings = learner_settings(prepared, plans["learner"])
    learners = []
    for rank in range(config.learner.num_ranks):
        opts = dict(learner_opts)
        if name_prefix:
            opts["name"] = named("learner", rank)
        if pg is not None:
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=rank
            )
            opts["resources"] = {}  # the bundle already reserved the pool resource
        learners.append(ray.remote(LearnerRank).options(**opts).remote(rank, settings))
    names = {f"rollout-{i}": a for i, a in enumerate(rollouts)}
    names.update({f"teacher-{i}": a for i, a in enumerate(scorers)})
    names["selector-0"] = selector
    return StageActors(
        rollouts=rollouts,
        scorers=scorers,
        selector=selector,
        learners=learners,
        placement_groups=groups,
        all=[*rollouts, *scorers, selector, *learners],
        names=names,
    )


def weight_sync_mode(config) -> tuple[bool, str]:
    """(broadcast?, transport) for rollout.weight_sync.

    NCCL needs the learner and the rollout engines on different GPUs, which whole-GPU actors
    guarantee and fractional ones (a shared GPU) do not: fractional or CPU actors broadcast over
    gloo (host memory), and `auto` keeps them on the object store.
    """
    plans = plan_placement(config)
    whole_gpus = plans["rollout"].num_gpus >= 1 and plans["learner"].num_gpus >= 1
    colocated = getattr(config.rollout.backend, "sleep_when_idle", False)
    sync = config.rollout.weight_sync
    transport = "nccl" if whole_gpus else "gloo"
    if sync.type == "broadcast":
        return True, transport if sync.transport == "auto" else sync.transport
    return sync.type == "auto" and whole_gpus and not colocated, transport


class Controller:
    """Launches batches through the stages and consumes them in step order."""

    def __init__(self, prepared: PreparedRun, actors: StageActors):
        self.prepared = prepared
        self.actors = actors
        config = prepared.config
        self.lag = config.train.max_policy_lag
        self.timeout = config.train.stage_timeout_s
        self.queue = RefQueue(capacity=max(self.lag + 1, config.train.queue_capacity))
        self._next_scorer = 0
        self.incarnations: dict[str, str] = {}  # actor name -> incarnation last seen
        self.restarts: dict[str, int] = {}  # actor name -> restarts seen
        self.broadcast_weights, self.weight_transport = weight_sync_mode(config)
        self._weight_group_members: list[str] | None = None  # rollout incarnations in the group

    def setup_learners(self) -> None:
        host, port = wait_stage(self.actors.learners[0].rendezvous_address.remote(), "learner", self.timeout)
        wait_all([r.setup.remote(host, port) for r in self.actors.learners], "learner", self.timeout)

    def wait_ready(self) -> None:
        refs = [a.ready.remote() for a in (*self.actors.rollouts, *self.actors.scorers, self.actors.selector)]
        wait_stage(refs, "startup", self.timeout)
        names = list(self.actors.names)
        ids = wait_stage([self.actors.names[n].incarnation.remote() for n in names], "startup", self.timeout)
        self.incarnations.update(zip(names, ids))

    def note_incarnations(self, names: list[str], ids: list[str]) -> list[str]:
        """Record the incarnations seen; returns the names of actors restarted since last seen."""
        restarted = []
        for name, ident in zip(names, ids):
            if self.incarnations.get(name, ident) != ident:
                restarted.append(name)
                self.restarts[name] = self.restarts.get(name, 0) + 1
            self.incarnations[name] = ident
        return restarted

    def launch(self, batch: PromptBatch, weights: WeightVersion) -> None:
        shards = split_prompts(batch, len(self.actors.rollouts))
        rollout_refs = [w.generate.remote(shard, weights) for w, shard in zip(self.actors.rollouts, shards)]
        used = [f"rollout-{i}" for i in range(len(rollout_refs))]
        scored_refs = []
        for ref in rollout_refs:
            index = self._next_scorer % len(self.actors.scorers)
            self._next_scorer += 1
            scored_refs.append(self.actors.scorers[index].score.remote(ref))
            used.append(f"teacher-{index}")
        selected_ref, summary_ref = self.actors.selector.select.options(num_returns=2).remote(
            weights, *scored_refs
        )
        used.append("selector-0")
        # Asked after the stage calls, so the answer comes from the actor that ran (or re-ran) them.
        incarnation_refs = [(name, self.actors.names[name].incarnation.remote()) for name in dict.fromkeys(used)]
        self.queue.put(
            InFlight(batch, rollout_refs, scored_refs, selected_ref, summary_ref, time.perf_counter(),
                     weights.version, incarnation_refs)
        )

    def consume(self, step: int):
        """Wait for the oldest batch: (InFlight, rollouts, SelectionSummary, restarted actor
        names). The teacher signal and the selected batch stay in the object store; only small
        records come here."""
        item = self.queue.pop()
        # Name the first stage that does not answer in time.
        rollouts = wait_stage(item.rollout_refs, "rollout", self.timeout)
        wait_ready_refs(item.scored_refs, "teacher", self.timeout)
        summary = wait_stage(item.summary_ref, "selector", self.timeout)
        if summary.batch_id != step:
            raise RuntimeError(f"batch {summary.batch_id} arrived for step {step}: order broken")
        lag = step - summary.policy_version
        if lag > self.lag or step - summary.selector_version > self.lag:
            raise PolicyLagExceeded(
                f"batch {step} was sampled with policy version {summary.policy_version} and selected "
                f"with version {summary.selector_version}, over train.max_policy_lag={self.lag}"
            )
        names = [name for name, _ in item.incarnation_refs]
        ids = wait_stage([ref for _, ref in item.incarnation_refs], "incarnation", self.timeout)
        restarted = self.note_incarnations(names, ids)
        return item, rollouts, summary, restarted

    def train(self, selected_ref) -> Any:
        results = wait_all([r.train_step.remote(selected_ref) for r in self.actors.learners], "learner", self.timeout)
        return results[0]

    def publish_weights(self, version: int) -> WeightVersion:
        """Gather the learners' weights as policy `version`; with weight broadcast, rank 0 also
        sends them to every rollout engine now. Rank 0's gathered weights stay in the object store
        as the return value of its call (owned by this controller, which never pulls them in: it
        waits on a small tensor count), and every stage that needs them reads that one copy: the
        selector, evaluation and a restarted rollout worker."""
        learners = self.actors.learners
        broadcast = self.broadcast_weights
        if broadcast:
            self.ensure_weight_group()
        calls = [r.gather_weights.options(num_returns=2).remote(broadcast) for r in learners]
        counts = [count for count, _ in calls]
        receives = [w.receive_weights.remote(version) for w in self.actors.rollouts] if broadcast else []
        # One group: a member that fails leaves the others blocked in the gather or the broadcast.
        wait_all([*counts, *receives], "weight broadcast" if broadcast else "learner", self.timeout)
        return WeightVersion(version=version, refs=(calls[0][1],))

    def ensure_weight_group(self) -> None:
        """(Re)form learner rank 0's broadcast group with every rollout worker: at the first sync
        and after Ray restarted a rollout worker (a new process is not in the old group)."""
        rollouts = self.actors.rollouts
        members = wait_stage([w.incarnation.remote() for w in rollouts], "rollout", self.timeout)
        if members == self._weight_group_members:
            return
        ranks = wait_stage([w.broadcast_ranks.remote() for w in rollouts], "rollout", self.timeout)
        host, port = wait_stage(self.actors.learners[0].rendezvous_address.remote(), "learner", self.timeout)
        address = GroupAddress(host, port, world_size=1 + sum(ranks), transport=self.weight_transport,
                               timeout_s=self.timeout)
        offsets = [1 + sum(ranks[:i]) for i in range(len(rollouts))]
        joins = [self.actors.learners[0].join_weight_group.remote(address)]
        joins += [w.join_weight_group.remote(address, offset) for w, offset in zip(rollouts, offsets)]
        wait_all(joins, "weight broadcast group", self.timeout)
        if self._weight_group_members is not None:
            log.info("weight broadcast group formed again (a rollout worker was restarted)")
        self._weight_group_members = members

    def save_learners(self, folder) -> list[str]:
        """Every rank writes its shard of the learner state into `folder` (on storage it can reach)."""
        written = wait_all([r.save_checkpoint.remote(str(folder)) for r in self.actors.learners],
                           "learner (checkpoint)", self.timeout)
        return sorted({f for files in written for f in files})

    def load_learners(self, folder) -> int:
        steps = wait_all([r.load_checkpoint.remote(str(folder)) for r in self.actors.learners],
                         "learner (resume)", self.timeout)
        return int(steps[0])


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
