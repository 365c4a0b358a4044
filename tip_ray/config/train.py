"""train and checkpoint: the update loop's length, seed, fault limits, and what is kept on disk.
This module imports neither torch nor ray."""

from __future__ import annotations

from pydantic import Field

from tip_ray.config.base import Strict
from tip_ray.config.preemption import SigtermCheckpoint


class TrainConfig(Strict):
    steps: int = Field(default=100, gt=0, description="Optimizer updates in the run.")
    seed: int = Field(default=0, description="Seed of data order, sampling and selection.")
    max_policy_lag: int = Field(
        default=0,
        ge=0,
        description="Most policy versions a rollout may lag the learner (0 = exactly on-policy). "
        "It also bounds the batches in flight: batch b waits for version b - L, so at most L + 1 are "
        "launched and not yet trained on.",
    )
    stage_timeout_s: float = Field(
        default=600.0, gt=0.0, description="A stage call slower than this is reported as hung."
    )
    max_consecutive_bad_steps: int = Field(
        default=3, gt=0, description="Stop after this many NaN/inf steps in a row."
    )
    max_actor_restarts: int = Field(
        default=3,
        ge=0,
        description="Times Ray restarts a rollout, teacher or selector actor that dies; the call "
        "it had in flight is redone on the new actor with the same weights and seed.",
    )
    max_resumes: int = Field(
        default=2,
        ge=0,
        description="Times a run resumes by itself from its last checkpoint when a learner rank "
        "(or an actor out of restarts) dies or a stage hangs past stage_timeout_s; 0 = stop at "
        "the first such failure.",
    )


class CheckpointConfig(Strict):
    every_steps: int = Field(default=0, ge=0, description="0 = only at the end.")
    keep_last: int = Field(default=2, gt=0, description="Checkpoints kept on disk.")
    export_hf: bool = Field(
        default=True, description="Also write a from_pretrained-loadable model folder."
    )
    on_sigterm: SigtermCheckpoint = Field(
        default_factory=SigtermCheckpoint, description="Stopping on SIGTERM (preemption)."
    )
