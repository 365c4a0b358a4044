"""The teacher stage of a run whose teacher is a service (`teacher.backend: {type: service}`):
a thin actor with the scorer's contract (ready, score) that checks the service once and then
forwards each batch to it under the run's id. It loads no model."""

from __future__ import annotations

import time

from tip_ray.config.teacher_service import SERVICE_NAMESPACE, ServiceTeacher
from tip_ray.records import RolloutBatch, ScoredBatch
from tip_ray.teacher.scorer import ScorerSettings
from tip_ray.teacher.service import TeacherServiceError
from tip_ray.teacher.service_identity import check_same, identity_of

PING_S = 30.0  # a front that exists but does not answer this long counts as missing
POLL_S = 1.0


class TeacherServiceMissing(TeacherServiceError):
    """The named service is not on the cluster (never started, stopped, or gone for good)."""


class ServiceTeacherClient:
    def __init__(self, settings: ScorerSettings, *, tokenizer_path: str, run_id: str):
        backend = settings.teacher.backend
        if not isinstance(backend, ServiceTeacher):
            raise TypeError(f"ServiceTeacherClient needs teacher.backend type 'service', got {backend.type!r}")
        self.settings = settings
        self.backend = backend
        self.run_id = run_id
        self.identity = identity_of(settings.model_path, tokenizer_path, settings.vocab_size or 0,
                                    settings.teacher.signal, settings.dtype)
        self.front = self._find(None)

    def ready(self) -> str:
        return self.settings.name

    def _find(self, cause: BaseException | None):
        """The service's front, checked against this run; waits for it when on_missing is wait."""
        import ray

        name = self.backend.name
        deadline = time.monotonic() + (self.backend.wait_s if self.backend.on_missing == "wait" else 0.0)
        while True:
            try:
                front = ray.get_actor(name, namespace=SERVICE_NAMESPACE)
                theirs = ray.get(front.get_identity.remote(), timeout=PING_S)
            except (ValueError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                cause = exc
            else:
                check_same(theirs, self.identity, name)
                return front
            if time.monotonic() >= deadline:
                waited = (f" after waiting {self.backend.wait_s:g} s (teacher.backend.wait_s)"
                          if self.backend.on_missing == "wait" else "")
                hint = "" if self.backend.on_missing == "wait" else (
                    ", or set teacher.backend.on_missing: wait to wait for it to come back")
                raise TeacherServiceMissing(
                    f"teacher.backend: teacher service {name!r} is not running on this Ray cluster{waited} "
                    f"({type(cause).__name__ if cause else 'not found'}): start it with `tip-ray teacher serve "
                    f"PIPELINE --name {name} --address ADDRESS`{hint}", service=name)
            time.sleep(POLL_S)

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        import ray

        while True:
            try:
                [scored_ref] = ray.get(self.front.score.remote(self.run_id, rollout))
                return ray.get(scored_ref)
            except (ray.exceptions.RayActorError, ray.exceptions.OwnerDiedError) as exc:
                # The front (or whatever owned the answer) went away: find the service again (a
                # restarted front, or one started anew) and send the batch again.
                self.front = self._find(exc)
