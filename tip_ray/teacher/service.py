"""A teacher service: a long-lived, named group of teacher scorers on a Ray cluster that many
runs share (`tip-ray teacher serve`, `teacher.backend: {type: service, name: NAME}`).

Plain Ray actors, all detached and named in one namespace (SERVICE_NAMESPACE):

- the front, named NAME: takes every run's requests, keeps one queue per run and hands the next
  request to a free replica taking the runs in turn (round-robin), so a run that sends many
  batches does not starve one that sends few. It holds no model; Ray restarts it
  (max_restarts=-1) and it finds its replicas again by name.
- the replicas, named NAME/replica-I: the same scorer classes a run starts for itself (by
  teacher.backend), restarted by Ray up to max_restarts times; a call in flight when one dies is
  redone on the restarted replica (max_task_retries), scoring being deterministic.

A run's own teacher actors are then thin clients (teacher/service_client.py) that forward each
batch with the run's id. The front answers with a reference to the replica's result, so the
scored batch goes from the replica to the run without passing through the front.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import asdict

from tip_ray.config.teacher_service import SERVICE_NAMESPACE
from tip_ray.errors import TipRayError
from tip_ray.teacher.service_identity import ServiceIdentity

REPLICA_SEPARATOR = "/replica-"
STATUS_PING_S = 10.0


class TeacherServiceError(TipRayError, RuntimeError):
    """A teacher service cannot be started, found or used as asked."""

    _fields = ("service",)


def replica_name(service: str, index: int) -> str:
    return f"{service}{REPLICA_SEPARATOR}{index}"


class TeacherServiceFront:
    """The service's one entry point (an async Ray actor: many requests wait here at once)."""

    def __init__(self, name: str, identity: ServiceIdentity, stages: list[tuple[type, tuple, dict, dict]]):
        import ray

        self.name = name
        self.identity = identity
        self.started_at = time.time()
        # get_if_exists: a restarted front takes over the replicas its previous incarnation made.
        self.replicas = [
            ray.remote(cls).options(**options, name=replica_name(name, i), namespace=SERVICE_NAMESPACE,
                                    lifetime="detached", get_if_exists=True).remote(*args, **kwargs)
            for i, (cls, args, kwargs, options) in enumerate(stages)
        ]
        self.idle = list(range(len(self.replicas)))
        self.pending: dict[str, deque] = {}
        self.turns: deque[str] = deque()  # runs in round-robin order
        self.served: Counter = Counter()
        self.recent: deque[str] = deque(maxlen=64)  # run ids in the order their requests were dispatched
        self.incarnations: list[set[str]] = [set() for _ in self.replicas]

    async def ready(self) -> int:
        """Wait until every replica has built its model; the number of replicas."""
        ids = await asyncio.gather(*(r.incarnation.remote() for r in self.replicas))
        for seen, ident in zip(self.incarnations, ids):
            seen.add(ident)
        return len(self.replicas)

    def get_identity(self) -> ServiceIdentity:
        return self.identity

    async def score(self, run_id: str, rollout) -> list:
        """Queue `rollout` under `run_id`; answers [reference to the ScoredBatch] once a replica
        has scored it (a list, so Ray hands the reference on instead of the batch)."""
        future = asyncio.get_running_loop().create_future()
        if run_id not in self.pending:
            self.pending[run_id] = deque()
            self.turns.append(run_id)
        self.pending[run_id].append((rollout, future))
        self._dispatch()
        return await future

    def _next_request(self):
        for _ in range(len(self.turns)):
            run_id = self.turns[0]
            self.turns.rotate(-1)
            if self.pending[run_id]:
                return run_id, self.pending[run_id].popleft()
        return None

    def _dispatch(self) -> None:
        while self.idle:
            request = self._next_request()
            if request is None:
                return
            run_id, (rollout, future) = request
            self.recent.append(run_id)
            asyncio.ensure_future(self._serve(self.idle.pop(0), run_id, rollout, future))

    async def _serve(self, index: int, run_id: str, rollout, future) -> None:
        replica = self.replicas[index]
        try:
            scored_ref = replica.score.remote(rollout)
            # Asked after the score call: it answers once that call is done (or redone by a
            # restarted replica), without fetching the scored batch here.
            ident = await replica.incarnation.remote()
            self.incarnations[index].add(ident)
            self.served[run_id] += 1
            if not future.done():  # the client may have gone: the answer is simply dropped
                future.set_result([scored_ref])
        except Exception as exc:  # the replica died for good, or its call failed
            if not future.done():
                future.set_exception(TeacherServiceError(
                    f"teacher service {self.name!r}: {replica_name(self.name, index)} failed: {exc}",
                    service=self.name))
        finally:
            self.idle.append(index)
            self._dispatch()

    async def status(self) -> dict:
        async def ping(i: int, replica) -> str:
            try:
                ident = await asyncio.wait_for(replica.incarnation.remote(), STATUS_PING_S)
            except Exception as exc:  # dead, or busy past the ping limit
                return f"not answering: {type(exc).__name__}"
            self.incarnations[i].add(ident)
            return "alive"

        states = await asyncio.gather(*(ping(i, r) for i, r in enumerate(self.replicas)))
        return {
            "name": self.name,
            "identity": asdict(self.identity),
            "started_at": self.started_at,
            "replicas": [{"name": replica_name(self.name, i), "state": state, "built": len(self.incarnations[i])}
                         for i, state in enumerate(states)],
            "constructions": sum(len(s) for s in self.incarnations),
            "served": dict(self.served),
            "pending": {run: len(q) for run, q in self.pending.items() if q},
            "recent": list(self.recent),
        }
