"""One learner rank's part of a checkpoint.

Checkpoints are sharded: every rank writes its own shard of the weights and of the optimizer
state with torch.distributed.checkpoint (no rank ever holds the whole optimizer state, and a
checkpoint loads on another number of ranks), plus a small file with its scheduler, step and RNG.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch
import torch.distributed as dist

from tip_ray.learner.lora import learner_state, restore_learner_state
from tip_ray.learner.settings import LearnerSettings


def save_rank_checkpoint(
    folder: str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    rank: int,
    settings: LearnerSettings,
    device: torch.device,
) -> list[str]:
    """Write this rank's part of a checkpoint into `folder` (every rank calls it together):
    its shard of the weights and optimizer state under shards/ (torch.distributed.checkpoint)
    and rank_<r>.pt with the scheduler, the applied-update count and the RNG states.
    Returns the files this rank wrote, relative to `folder`."""
    import torch.distributed.checkpoint as dcp

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    # Before the first applied update AdamW has no state; asking for it would create some
    # (a zero step), and a resumed run would then differ from one that never stopped.
    has_optimizer_state = bool(optimizer.state)
    lora = settings.lora is not None
    model_state, optim_state = learner_state(model, optimizer if has_optimizer_state else None, lora)
    state = {"model": model_state} if optim_state is None else {"model": model_state, "optim": optim_state}
    dcp.save(state, checkpoint_id=str(out / "shards"))
    extras = {
        "step": step,
        "world_size": settings.world_size,
        "has_optimizer_state": has_optimizer_state,
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and device.type == "cuda":
        extras["cuda_rng"] = torch.cuda.get_rng_state(device)
    own = out / f"rank_{rank}.pt"
    tmp = own.with_name(own.name + ".tmp")
    torch.save(extras, tmp)
    os.replace(tmp, own)
    dist.barrier()
    written = [own.name] + [p.relative_to(out).as_posix() for p in (out / "shards").iterdir()]
    return sorted(written)


def load_rank_checkpoint(
    folder: str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rank: int,
    settings: LearnerSettings,
    device: torch.device,
) -> int:
    """Restore weights, optimizer, scheduler, step and RNG from `folder` (every rank calls it
    together); the shards are re-split if the number of ranks changed. Returns the step."""
    import torch.distributed.checkpoint as dcp

    src = Path(folder)
    own = src / f"rank_{rank}.pt"
    # weights_only: a checkpoint file can hold tensors and plain values, never code.
    extras = torch.load(own if own.exists() else src / "rank_0.pt", weights_only=True)
    lora = settings.lora is not None
    restored_optimizer = optimizer if extras["has_optimizer_state"] else None
    model_state, optim_state = learner_state(model, restored_optimizer, lora)
    state = {"model": model_state} if optim_state is None else {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(src / "shards"))
    restore_learner_state(model, restored_optimizer, state["model"], state.get("optim"), lora)
    scheduler.load_state_dict(extras["scheduler"])
    step = int(extras["step"])
    torch.set_rng_state(extras["torch_rng"])
    version, internal, gauss = extras["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda_rng" in extras and device.type == "cuda":
        torch.cuda.set_rng_state(extras["cuda_rng"], device)
    dist.barrier()
    return step
