"""What a learner rank is built with: the student, the optimiser and schedule, the loss, and
the process group."""

from __future__ import annotations

from dataclasses import dataclass

from tip_ray.learner.lora import LoraSettings


@dataclass(frozen=True)
class LearnerSettings:
    model_path: str
    teacher_head_path: str | None  # for the `hidden` teacher form
    world_size: int
    total_steps: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    warmup_steps: int
    schedule: str
    min_lr_ratio: float
    grad_clip: float | None
    micro_batch_size: int
    loss: str
    beta: float
    chunk_size: int
    dtype: str = "float32"
    backend: str = "gloo"
    seed: int = 0
    num_threads: int | None = None
    vocab_size: int | None = None  # student vocabulary; a larger (padded) teacher head is cut to it
    lora: LoraSettings | None = None  # train adapters on a frozen base instead of every weight
