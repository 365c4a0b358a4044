"""The learner's optimiser (AdamW over the trainable parameters) and its learning-rate schedule:
linear warmup, then constant or cosine decay to a floor."""

from __future__ import annotations

import math

import torch

from tip_ray.learner.lora import trainable_parameters
from tip_ray.learner.settings import LearnerSettings


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: torch.nn.Module, s: LearnerSettings
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over what trains (every weight, or the LoRA adapters) and its schedule."""
    opt = s.learner.optimizer
    optimizer = torch.optim.AdamW(
        trainable_parameters(model), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, s.train.steps, opt.warmup_steps, opt.schedule, opt.min_lr_ratio),
    )
    return optimizer, scheduler
