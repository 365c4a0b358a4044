"""What a learner rank is built with: the student, the optimiser and schedule, the loss, and
the process group."""

from __future__ import annotations

from dataclasses import dataclass

from tip_ray.config.learner import LearnerConfig
from tip_ray.config.loss import Loss
from tip_ray.config.train import TrainConfig
from tip_ray.learner.lora import LoraSettings


@dataclass(frozen=True)
class LearnerSettings:
    """The run's learner, loss and train sections as written, plus what the config does not say:
    resolved folders, the ranks actually in the group, dtype, process-group backend, threads."""

    model_path: str
    teacher_head_path: str | None  # for the `hidden` teacher form
    world_size: int  # ranks in the process group: learner.num_ranks in a run, 1 in-process
    learner: LearnerConfig
    loss: Loss
    train: TrainConfig  # steps (the schedule's length) and seed
    dtype: str = "float32"
    group_backend: str = "gloo"  # learner.backend with auto resolved by device
    num_threads: int | None = None
    vocab_size: int | None = None  # student vocabulary; a larger (padded) teacher head is cut to it
    lora: LoraSettings | None = None  # train adapters on a frozen base instead of every weight
