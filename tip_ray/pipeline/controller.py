"""The controller: drives one distillation run's batches through the stage actors and holds the
policy-lag schedule.

    sampler ─► launch b ─► Rollout ─► Teacher ─► Selector ─► in-flight FIFO ─► consume s ─► Learner
                  ▲                                                                            │
                  └────────── publish version s + 1: unblocks the launch of b = s + 1 + L ◄────┘

One queue: the FIFO of launched, not yet consumed batches. The stages themselves are chained by
Ray: the controller hands each call the object references of the one before (Ray moves the data
between the actors directly) and waits only at the end of the chain.

| stage     | consumes                        | waits for                        | unblocked by               |
|-----------|---------------------------------|----------------------------------|----------------------------|
| rollout   | a prompt shard, weights of      | its earlier calls (one actor     | the launch of batch b, as  |
|           | version max(0, b - L)           | serves one call at a time)       | soon as b - L is published |
| teacher   | a RolloutBatch reference        | that rollout call                | the rollout call's result  |
| selector  | the batch's ScoredBatch refs,   | every teacher call of the batch  | the batch's last teacher   |
|           | weights of the same version     |                                  | call                       |
| consume   | fetches the RolloutBatches      | the oldest batch's three calls   | the selector call of       |
| (driver)  | (ids, masks, texts) and the     | (the teacher signal is waited    | batch s                    |
|           | SelectionSummary                | on, never fetched)               |                            |
| learner   | the selected batch reference    | every rank (a collective step)   | consume of step s          |
| publish   | rank 0's gathered weights, left | every rank's gather and, with    | the learner step s         |
|           | in the object store             | broadcast, every engine's receive|                            |

The policy-lag invariant (train.max_policy_lag = L) lives here: batch b is sampled with weights of
version max(0, b - L) and launched as soon as that version is published, so the batch consumed at
step s was sampled with version >= s - L, at most L + 1 batches are in flight while the learner
works, and only versions that an in-flight batch still needs are kept. `consume` checks it again
on the selector's summary and raises PolicyLagExceeded rather than train on older weights.

Faults (pipeline.faults): rollout, teacher and selector calls are retried by Ray on a restarted
actor with the same weights and seed; each actor reports an incarnation id after its calls, so
`consume` names the actors that were restarted. Every wait names its stage (pipeline.waits).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tip_ray.data.prompts import DataPosition, PromptSampler
from tip_ray.pipeline.actors import StageActors
from tip_ray.pipeline.batches import make_prompt_batch, split_prompts
from tip_ray.pipeline.faults import PolicyLagExceeded
from tip_ray.pipeline.placement import Role
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.teacher_routing import ScorerRouter, route_batch
from tip_ray.pipeline.waits import wait_all, wait_ready_refs, wait_stage
from tip_ray.pipeline.weight_publish import WeightPublisher
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
    incarnation_refs: list[tuple[str, Any]] = field(default_factory=list)  # (actor name, ref)


class Controller:
    """Launches batches through the stages on the lag schedule and consumes them in step order."""

    def __init__(self, prepared: PreparedRun, actors: StageActors, sampler: PromptSampler):
        self.prepared = prepared
        self.actors = actors
        self.sampler = sampler
        config = prepared.config
        self.steps = config.train.steps
        self.prompts_per_step = config.rollout.prompts_per_step
        self.lag = config.train.max_policy_lag
        self.timeout = config.train.stage_timeout_s
        self.queue: deque[InFlight] = deque()  # launched, not yet consumed; at most lag + 1
        # Batch id -> the sampler's position before that batch: kept for the batches not yet
        # trained (a checkpoint after update s resumes from batch s), at most lag + 1 entries.
        self.positions: dict[int, DataPosition] = {}
        # Versions that launched or yet unlaunched batches need; 0 is the model folder's weights.
        self.weights_cache: dict[int, WeightVersion] = {0: WeightVersion(version=0)}
        self.next_launch = 0
        self.scorer_router = ScorerRouter(actors.scorers, actors.scorer_teacher)
        self.teacher_of_row = prepared.teacher_of_row if config.teachers else None
        self.incarnations: dict[str, str] = {}  # actor name -> incarnation last seen
        self.restarts: dict[str, int] = {}  # actor name -> restarts seen
        self.publisher = WeightPublisher(actors, config)

    # ------------------------------------------------------------------ the lag schedule

    def start(self, first: int) -> None:
        """Launch the first L + 1 batches of a run (attempt) that continues at step `first`."""
        self.next_launch = first
        self.launch_until(first + self.lag + 1)

    def launch_until(self, limit: int) -> None:
        """Launch batches up to id `limit` - 1; batch b is sampled with version max(0, b - lag)."""
        limit = min(limit, self.steps)
        while self.next_launch < limit:
            b = self.next_launch
            self.positions[b] = self.sampler.position
            batch = make_prompt_batch(self.sampler, b, self.prompts_per_step)
            if self.teacher_of_row is not None:  # several teachers: each one's prompts together
                batch = route_batch(batch, self.teacher_of_row)
            self.launch(batch, self.weights_cache[max(0, b - self.lag)])
            self.next_launch += 1

    def publish(self, version: int) -> WeightVersion:
        """Publish the learner's weights as `version` and keep them for the batches that need them."""
        weights = self.publisher.publish(version)
        self.weights_cache[version] = weights
        return weights

    def advance(self, version: int) -> tuple[WeightVersion, float]:
        """After update `version`: publish it, forget versions no batch needs any more, launch the
        batch it unblocks. Returns the weights and the seconds the publishing took."""
        start = time.perf_counter()
        weights = self.publish(version)
        seconds = time.perf_counter() - start
        for old in [v for v in self.weights_cache if v < version - self.lag]:
            del self.weights_cache[old]
        for trained in [b for b in self.positions if b < version]:
            del self.positions[trained]
        self.launch_until(version + 1 + self.lag)
        return weights, seconds

    def in_flight_after(self, step: int) -> tuple[list[int], list[int]]:
        """(batch ids launched but not trained after update `step`, the policy versions beside
        `step` and 0 they were sampled with): what a checkpoint at `step` must keep."""
        in_flight = list(range(step, self.next_launch))
        versions = sorted({max(0, b - self.lag) for b in in_flight} - {0, step})
        return in_flight, versions

    def position_at(self, step: int) -> DataPosition:
        """The data position a run continuing at update `step` samples from."""
        return self.positions.get(step, self.sampler.position)

    # ------------------------------------------------------------------ actors

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
        """Chain the batch's calls through the stages and append it to the in-flight FIFO."""
        if len(self.queue) > self.lag:
            raise RuntimeError(f"{len(self.queue) + 1} batches in flight over max_policy_lag={self.lag}: "
                               f"the controller launched too early")
        shards = split_prompts(batch, len(self.actors.rollouts))
        rollout_refs = [w.generate.remote(shard, weights) for w, shard in zip(self.actors.rollouts, shards)]
        used = [f"{Role.ROLLOUT}-{i}" for i in range(len(rollout_refs))]
        scored_refs, teachers, scorers = self.scorer_router.score(shards, rollout_refs)
        used += [f"{Role.TEACHER}-{index}" for index in scorers]
        by_teacher = {"teachers": teachers} if self.teacher_of_row is not None else {}
        selected_ref, summary_ref = self.actors.selector.select.options(num_returns=2).remote(
            weights, *scored_refs, **by_teacher
        )
        used.append(f"{Role.SELECTOR}-0")
        # Asked after the stage calls, so the answer comes from the actor that ran (or re-ran) them.
        incarnation_refs = [(name, self.actors.names[name].incarnation.remote()) for name in dict.fromkeys(used)]
        self.queue.append(InFlight(batch, rollout_refs, scored_refs, selected_ref, summary_ref, incarnation_refs))

    def consume(self, step: int):
        """Wait for the oldest batch: (InFlight, rollouts, SelectionSummary, restarted actor
        names). The rollout batches (token ids, masks, texts) and the summary come here; the
        teacher signal and the selected batch stay in the object store."""
        item = self.queue.popleft()
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

    def save_learners(self, folder) -> list[str]:
        """Every rank writes its shard of the learner state into `folder` (on storage it can reach)."""
        written = wait_all([r.save_checkpoint.remote(str(folder)) for r in self.actors.learners],
                           "learner (checkpoint)", self.timeout)
        return sorted({f for files in written for f in files})

    def load_learners(self, folder) -> int:
        steps = wait_all([r.load_checkpoint.remote(str(folder)) for r in self.actors.learners],
                         "learner (resume)", self.timeout)
        return int(steps[0])
