"""Publishing the learner's weights as a new policy version (rollout.weight_sync).

The gathered weights always go into the object store once (the selector, evaluation and restarted
actors read them there); with `broadcast`, learner rank 0 also sends them straight to every
rollout engine over a group of its own (NCCL or gloo), and the engines mark that version as held,
so their next call loads nothing.
"""

from __future__ import annotations

import logging

from tip_ray.broadcast import GroupAddress
from tip_ray.pipeline.actors import StageActors
from tip_ray.pipeline.placement import Role, plan_placement
from tip_ray.pipeline.waits import wait_all, wait_stage
from tip_ray.weights import WeightVersion

log = logging.getLogger("tip_ray")


def weight_sync_mode(config) -> tuple[bool, str]:
    """(broadcast?, transport) for rollout.weight_sync.

    NCCL needs the learner and the rollout engines on different GPUs, which whole-GPU actors
    guarantee and fractional ones (a shared GPU) do not: fractional or CPU actors broadcast over
    gloo (host memory), and `auto` keeps them on the object store.
    """
    plans = plan_placement(config)
    whole_gpus = plans[Role.ROLLOUT].num_gpus >= 1 and plans[Role.LEARNER].num_gpus >= 1
    colocated = getattr(config.rollout.backend, "sleep_when_idle", False)
    sync = config.rollout.weight_sync
    transport = "nccl" if whole_gpus else "gloo"
    if sync.type == "broadcast":
        return True, transport if sync.transport == "auto" else sync.transport
    return sync.type == "auto" and whole_gpus and not colocated, transport


class WeightPublisher:
    """Gathers the learner ranks' weights into one policy version and, with broadcast, sends it
    to the rollout engines."""

    def __init__(self, actors: StageActors, config):
        self.actors = actors
        self.timeout = config.train.stage_timeout_s
        self.broadcast, self.transport = weight_sync_mode(config)
        self._group_members: list[str] | None = None  # rollout incarnations in the group

    def publish(self, version: int) -> WeightVersion:
        """Gather the learners' weights as policy `version`; with weight broadcast, rank 0 also
        sends them to every rollout engine now. Rank 0's gathered weights stay in the object store
        as the return value of its call (owned by this driver, which never pulls them in: it
        waits on a small tensor count), and every stage that needs them reads that one copy: the
        selector, evaluation and a restarted rollout worker."""
        learners = self.actors.learners
        broadcast = self.broadcast
        if broadcast:
            self.ensure_group()
        calls = [r.gather_weights.options(num_returns=2).remote(broadcast) for r in learners]
        counts = [count for count, _ in calls]
        receives = [w.receive_weights.remote(version) for w in self.actors.rollouts] if broadcast else []
        # One group: a member that fails leaves the others blocked in the gather or the broadcast.
        wait_all([*counts, *receives], "weight broadcast" if broadcast else "learner", self.timeout)
        return WeightVersion(version=version, refs=(calls[0][1],))

    def ensure_group(self) -> None:
        """(Re)form learner rank 0's broadcast group with every rollout worker: at the first sync
        and after Ray restarted a rollout worker (a new process is not in the old group)."""
        rollouts = self.actors.rollouts
        members = wait_stage([w.incarnation.remote() for w in rollouts], "rollout", self.timeout)
        if members == self._group_members:
            return
        ranks = wait_stage([w.broadcast_ranks.remote() for w in rollouts], "rollout", self.timeout)
        host, port = wait_stage(self.actors.learners[0].rendezvous_address.remote(), "learner", self.timeout)
        address = GroupAddress(host, port, world_size=1 + sum(ranks), transport=self.transport,
                               timeout_s=self.timeout)
        offsets = [1 + sum(ranks[:i]) for i in range(len(rollouts))]
        joins = [self.actors.learners[0].join_weight_group.remote(address)]
        joins += [w.join_weight_group.remote(address, offset) for w, offset in zip(rollouts, offsets)]
        wait_all(joins, "weight broadcast group", self.timeout)
        if self._group_members is not None:
            log.info("weight broadcast group formed again (a rollout worker was restarted)")
        self._group_members = members
