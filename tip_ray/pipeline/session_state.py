"""What the parts of a run attempt (restore, checkpoint writing, the SIGTERM stop, the final
summary) read and update of it: the state RunSession (pipeline.session) holds, as a protocol so
that those parts do not import the step loop that calls them."""

from __future__ import annotations

from typing import Any, Protocol

from tip_ray.checkpoint import CheckpointStore, FaultCounters, TrainingCounters
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.pipeline.controller import Controller
from tip_ray.pipeline.prepare import PreparedRun
from tip_ray.pipeline.signals import StopRequest


class SessionState(Protocol):
    prepared: PreparedRun
    config: PipelineConfig
    actors: Any  # pipeline.actors.StageActors
    controller: Controller
    store: CheckpointStore
    faults: FaultCounters  # survive automatic resumes in this process
    faults_from_checkpoint: bool  # a new process reads them back from the checkpoint
    training: TrainingCounters
    after_failure: Exception | None  # the stage failure this attempt resumes after
    wall_before: float  # wall time spent by earlier processes (from the checkpoint)
    start_wall: float
    resumed_from: int | None
    stop_request: StopRequest | None
    checkpoint_seconds: list[float]  # write times measured in this process

    def write_checkpoint(self, step: int, learner_step: int) -> Any: ...
