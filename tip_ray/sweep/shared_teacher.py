"""One teacher service for every run of a sweep: the runs of a sweep differ in selection rule and
seed, not in teacher, so the teacher is built once (a service on the sweep's Ray session) instead
of once per run. Runs whose teachers differ, or whose teacher is already elsewhere (a `vllm
serve` server, a service), keep their own."""

from __future__ import annotations

import uuid

from tip_ray.config.pipeline import PipelineConfig

SHAREABLE_BACKENDS = ("hf", "vllm")


def teacher_key(config: PipelineConfig) -> str:
    """What a run's teacher scores depend on: two runs with the same key can share a service."""
    models = config.models
    parts = (models.teacher, models.student, models.tokenizer, models.dtype, config.teacher,
             config.selection.stats_chunk_size, config.cluster.pools, config.cluster.roles)
    return repr([p.model_dump() if hasattr(p, "model_dump") else p for p in parts])


def shared_teacher_reason(configs: list[PipelineConfig]) -> str | None:
    """None when the runs can share one teacher service, else why not (for the sweep's log)."""
    backend = configs[0].teacher.backend.type
    if backend not in SHAREABLE_BACKENDS:
        return f"teacher.backend is {backend!r}, already outside the runs"
    if len({teacher_key(c) for c in configs}) > 1:
        return "the runs' teachers differ (models, teacher section or pools)"
    return None


def service_override(name: str) -> dict:
    return {"teacher": {"backend": {"type": "service", "name": name}}}


class SweepTeacher:
    """The sweep's shared teacher service: started on entry, stopped on exit."""

    def __init__(self, config: PipelineConfig, log=print):
        self.config = config
        self.name = f"sweep-{uuid.uuid4().hex[:8]}"
        self.log = log

    def __enter__(self) -> "SweepTeacher":
        from tip_ray.pipeline.prepare import prepare_run
        from tip_ray.pipeline.service_control import start_service

        replicas = self.config.teacher.num_scorers
        start_service(prepare_run(self.config, write=False), self.name, replicas=replicas,
                      max_restarts=self.config.train.max_actor_restarts)
        self.log(f"shared teacher service {self.name!r}: {replicas} replica(s), built once for every run")
        return self

    def status(self) -> dict:
        from tip_ray.pipeline.service_control import service_status

        return service_status(self.name)

    def __exit__(self, *exc) -> None:
        from tip_ray.pipeline.service_control import stop_service

        try:
            status = self.status()
            served = status["served"]
            self.log(f"shared teacher service {self.name!r}: {status['constructions']} replica construction(s), "
                     f"{sum(served.values())} batch(es) scored for {len(served)} run(s)")
        finally:
            stop_service(self.name)
