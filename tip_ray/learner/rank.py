"""One learner rank: a member of a torch.distributed group training the student with FSDP2.

The learner is algorithm-blind: it receives a SelectedBatch (sequences, selected positions,
per-token weights, teacher signal there), runs the trunk, applies the LM head with gradient only
to the selected hidden states, and steps the optimizer. Every rank gets the whole batch and trains
its own contiguous slice of rows; the loss is normalised by the global selected-token count, so
the result does not depend on how rows are split over ranks and micro-batches.

Bad numbers never reach the weights: a batch whose teacher signal, token weights or statistics
hold NaN/inf is refused before the forward pass, and an update whose loss or gradient norm is not
finite, or that would make a weight non-finite (tip_ray.learner.guard), is not applied (all come
back as a skipped StepResult; the run counts them).

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

from tip_ray.broadcast import BroadcastGroup
from tip_ray.learner.gather import gather_adapters, gather_full_weights
from tip_ray.learner.lora import learner_state, restore_learner_state
from tip_ray.learner.memory import PeakMemory
from tip_ray.learner.process_group import join_process_group, leave_process_group, rendezvous_address
from tip_ray.learner.schedule import build_optimizer
from tip_ray.learner.settings import LearnerSettings
from tip_ray.learner.student import build_sharded_student
from tip_ray.learner.train_step import train_step
from tip_ray.records import SelectedBatch, StepResult


class LearnerRank:
    def __init__(self, rank: int, settings: LearnerSettings):
        from tip_ray.models.loading import limit_torch_threads

        limit_torch_threads(settings.num_threads)
        self.rank = rank
        self.settings = settings
        self.memory = PeakMemory()
        self.weight_group = None  # rank 0's broadcast group to the rollout engines, if any

    def rendezvous_address(self) -> tuple[str, int]:
        """Rank 0's reachable address and a free port, for the process group's rendezvous."""
        return rendezvous_address()

    def setup(self, master_addr: str, master_port: int) -> int:
        """Join the process group and build the sharded model and optimizer."""
        settings = self.settings
        rank = self.rank
        self.device = join_process_group(settings, rank, master_addr, master_port)
        torch.manual_seed(settings.seed)
        self.model = build_sharded_student(settings, self.device)
        s = settings
        self.optimizer, self.scheduler = build_optimizer(self.model, s)
        self.teacher_head = None
        if s.teacher_head_path:
            from tip_ray.scoring.head import load_lm_head

            self.teacher_head = load_lm_head(s.teacher_head_path, rows=s.vocab_size).to(self.device)
        self.step = 0
        return rank

    def ready(self) -> int:
        return self.rank

    def train_step(self, batch: SelectedBatch) -> StepResult:
        """One optimizer update on this rank's rows of `batch` (all ranks call it together)."""
        result = train_step(
            self.model, self.optimizer, self.scheduler, batch, settings=self.settings, rank=self.rank,
            step=self.step, device=self.device, teacher_head=self.teacher_head, memory=self.memory,
        )
        self.step = result.step
        return result

    def full_state_dict(self, broadcast: bool = False) -> dict[str, torch.Tensor] | None:
        """Gather the full weights (every rank must call); rank 0 returns them, others None.
        With `broadcast`, rank 0 also sends them to its weight group's receivers first."""
        state = gather_full_weights(self.model, self.rank, self.settings.lora)
        if state is None:
            return None
        if broadcast:
            if self.weight_group is None:
                raise RuntimeError("weight broadcast: learner rank 0 has no weight group; call join_weight_group first")
            self.weight_group.send(state)
        return state

    def adapter_weights(self) -> dict[str, torch.Tensor] | None:
        """The full LoRA adapters (every rank must call); rank 0 returns them, others None."""
        return gather_adapters(self.model, self.rank)

    def gather_weights(self, broadcast: bool = False) -> tuple[int, dict[str, torch.Tensor] | None]:
        """full_state_dict as two return values (call with num_returns=2): the number of tensors,
        small, for the caller to wait on, and the weights (rank 0; None elsewhere), which the
        caller passes on by reference without fetching them."""
        state = self.full_state_dict(broadcast=broadcast)
        return (len(state) if state is not None else 0), state

    def join_weight_group(self, address) -> int:
        """Rank 0: open (or replace) the broadcast group to the rollout engines as its sender."""
        if self.rank != 0:
            raise RuntimeError("weight broadcast: only learner rank 0 sends weights")
        self.weight_group = None  # leave the older group first
        self.weight_group = BroadcastGroup(address, 0, device=self.device)
        return 0

    def save_checkpoint(self, folder: str) -> list[str]:
        """Write this rank's part of a checkpoint into `folder` (every rank calls it together):
        its shard of the weights and optimizer state under shards/ (torch.distributed.checkpoint)
        and rank_<r>.pt with the scheduler, the applied-update count and the RNG states.
        Returns the files this rank wrote, relative to `folder`."""
        import torch.distributed.checkpoint as dcp

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        # Before the first applied update AdamW has no state; asking for it would create some
        # (a zero step), and a resumed run would then differ from one that never stopped.
        has_optimizer_state = bool(self.optimizer.state)
        lora = self.settings.lora is not None
        model_state, optim_state = learner_state(self.model, self.optimizer if has_optimizer_state else None, lora)
        state = {"model": model_state} if optim_state is None else {"model": model_state, "optim": optim_state}
        dcp.save(state, checkpoint_id=str(out / "shards"))
        extras = {
            "step": self.step,
            "world_size": self.settings.world_size,
            "has_optimizer_state": has_optimizer_state,
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        }
        if torch.cuda.is_available() and self.device.type == "cuda":
            extras["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        own = out / f"rank_{self.rank}.pt"
        tmp = own.with_name(own.name + ".tmp")
        torch.save(extras, tmp)
        os.replace(tmp, own)
        dist.barrier()
        written = [own.name] + [p.relative_to(out).as_posix() for p in (out / "shards").iterdir()]
        return sorted(written)

    def load_checkpoint(self, folder: str) -> int:
        """Restore weights, optimizer, scheduler, step and RNG from `folder` (every rank calls it
        together); the shards are re-split if the number of ranks changed. Returns the step."""
        import torch.distributed.checkpoint as dcp

        src = Path(folder)
        own = src / f"rank_{self.rank}.pt"
        # weights_only: a checkpoint file can hold tensors and plain values, never code.
        extras = torch.load(own if own.exists() else src / "rank_0.pt", weights_only=True)
        lora = self.settings.lora is not None
        optimizer = self.optimizer if extras["has_optimizer_state"] else None
        model_state, optim_state = learner_state(self.model, optimizer, lora)
        state = {"model": model_state} if optim_state is None else {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=str(src / "shards"))
        restore_learner_state(self.model, optimizer, state["model"], state.get("optim"), lora)
        self.scheduler.load_state_dict(extras["scheduler"])
        self.step = int(extras["step"])
        torch.set_rng_state(extras["torch_rng"])
        version, internal, gauss = extras["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda_rng" in extras and self.device.type == "cuda":
            torch.cuda.set_rng_state(extras["cuda_rng"], self.device)
        dist.barrier()
        return self.step

    def shutdown(self) -> None:
        leave_process_group()
