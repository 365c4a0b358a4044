"""One learner rank: a member of a torch.distributed group training the student with FSDP2.

The learner is algorithm-blind: it receives a SelectedBatch (sequences, selected positions,
per-token weights, teacher signal there), runs the trunk, applies the LM head with gradient only
to the selected hidden states, and steps the optimizer. The actor only holds the rank's state and
composes the modules that do the work:

- process_group.py: rendezvous, joining and leaving the group;
- student.py: the student and its FSDP2 sharding; schedule.py: AdamW and the learning rate;
- train_step.py: one update (rows sliced over ranks, micro-batches, gradient norm and clipping),
  refusing bad numbers (input_guard.py before the forward pass, guard.py for the update itself);
- gather.py: full weights or adapters onto rank 0; rank_checkpoint.py: this rank's checkpoint.
"""

from __future__ import annotations

import torch

from tip_ray.broadcast import BroadcastGroup
from tip_ray.learner.gather import gather_adapters, gather_full_weights
from tip_ray.learner.memory import PeakMemory
from tip_ray.learner.process_group import join_process_group, leave_process_group, rendezvous_address
from tip_ray.learner.rank_checkpoint import load_rank_checkpoint, save_rank_checkpoint
from tip_ray.learner.schedule import build_optimizer
from tip_ray.learner.settings import LearnerSettings
from tip_ray.learner.student import build_sharded_student
from tip_ray.learner.train_step import train_step
from tip_ray.packed_weights import PackedWeights, pack_state_dict
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
        torch.manual_seed(settings.train.seed)
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

    def gather_weights(self, broadcast: bool = False) -> tuple[int, PackedWeights | None]:
        """full_state_dict as two return values (call with num_returns=2): the number of tensors,
        small, for the caller to wait on, and the weights packed in one buffer (rank 0; None
        elsewhere), which the caller passes on by reference without fetching them; every stage
        that reads them shares the object store's copy (tip_ray.packed_weights)."""
        state = self.full_state_dict(broadcast=broadcast)
        if state is None:
            return 0, None
        return len(state), pack_state_dict(state)

    def join_weight_group(self, address) -> int:
        """Rank 0: open (or replace) the broadcast group to the rollout engines as its sender."""
        if self.rank != 0:
            raise RuntimeError("weight broadcast: only learner rank 0 sends weights")
        self.weight_group = None  # leave the older group first
        self.weight_group = BroadcastGroup(address, 0, device=self.device)
        return 0

    def save_checkpoint(self, folder: str) -> list[str]:
        """Write this rank's part of a checkpoint into `folder` (every rank calls it together);
        returns the files this rank wrote, relative to `folder` (see learner/rank_checkpoint.py)."""
        return save_rank_checkpoint(
            folder, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, step=self.step,
            rank=self.rank, settings=self.settings, device=self.device,
        )

    def load_checkpoint(self, folder: str) -> int:
        """Restore weights, optimizer, scheduler, step and RNG from `folder` (every rank calls it
        together); the shards are re-split if the number of ranks changed. Returns the step."""
        self.step = load_rank_checkpoint(
            folder, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            rank=self.rank, settings=self.settings, device=self.device,
        )
        return self.step

    def shutdown(self) -> None:
        leave_process_group()
