"""One optimizer update of a learner rank: its slice of the batch's rows in micro-batches, the
global gradient norm and clipping, and the guarded step.

Every rank gets the whole batch and trains its own contiguous slice of rows; the loss is
normalised by the global selected-token count, so the result does not depend on how rows are
split over ranks and micro-batches.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist

from tip_ray.config.loss import JSDLoss
from tip_ray.learner.device import batch_to_device
from tip_ray.learner.guard import guarded_step
from tip_ray.learner.input_guard import count_nonfinite_inputs
from tip_ray.learner.memory import PeakMemory
from tip_ray.learner.settings import LearnerSettings
from tip_ray.records import SelectedBatch, StepResult
from tip_ray.tip.signal import index_signal


def shard_rows(num_rows: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous, near-equal slice of rows for `rank`."""
    base, extra = divmod(num_rows, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: SelectedBatch,
    *,
    settings: LearnerSettings,
    rank: int,
    step: int,
    device: torch.device,
    teacher_head: torch.Tensor | None,
    memory: PeakMemory,
) -> StepResult:
    """One optimizer update on this rank's rows of `batch` (all ranks call it together); the
    result's step is the count of updates applied after it (`step`, plus one if applied)."""
    start = time.perf_counter()
    memory.start()
    s = settings
    batch = batch_to_device(batch, device)
    bad_inputs = count_nonfinite_inputs(batch)
    if bad_inputs:
        # Every rank holds the whole batch, so all of them refuse it together (no collective).
        return StepResult(
            step=step, loss=math.nan, grad_norm=math.nan, lr=scheduler.get_last_lr()[0],
            num_selected=batch.num_selected, skipped=True, seconds=time.perf_counter() - start,
            peak_memory_mib=memory.stop(), extra={"nonfinite_inputs": float(bad_inputs)},
        )
    global_count = float(batch.weights.numel())
    lo, hi = shard_rows(batch.input_ids.shape[0], rank, s.world_size)
    local = batch.rows(lo, hi)
    # Every rank runs the same number of micro-batches: FSDP's collectives must pair up.
    rows_per_rank = math.ceil(batch.input_ids.shape[0] / s.world_size)
    micro_batch_size = s.learner.micro_batch_size
    jsd_beta = s.loss.beta if isinstance(s.loss, JSDLoss) else 0.5  # only the jsd loss reads it
    num_micro = max(1, math.ceil(rows_per_rank / micro_batch_size))
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # NCCL reduces device tensors only
    for m in range(num_micro):
        a = min(m * micro_batch_size, local.input_ids.shape[0])
        b = min(a + micro_batch_size, local.input_ids.shape[0])
        micro = local.rows(a, b) if b > a else local.rows(0, 0)
        if micro.input_ids.shape[0] == 0:
            # An idle rank still joins the collectives: a zero-weight pass over one row.
            micro = _zero_weight_like(batch)
        model.set_requires_gradient_sync(m == num_micro - 1)
        loss = model(
            micro, loss=s.loss.type, beta=jsd_beta, chunk_size=s.loss.chunk_size,
            global_count=max(global_count, 1.0), teacher_head=teacher_head,
        )
        # FSDP averages gradients over ranks; the loss is a global sum over tokens, so scale.
        (loss * s.world_size).backward()
        loss_sum += loss.detach().double()
    dist.all_reduce(loss_sum)
    grad_norm = global_grad_norm(model, device)
    skipped = not (math.isfinite(float(loss_sum)) and math.isfinite(grad_norm))
    extra: dict[str, float] = {}
    if not skipped:
        grad_clip = s.learner.optimizer.grad_clip
        if grad_clip is not None and grad_norm > grad_clip:
            scale = grad_clip / (grad_norm + 1e-6)
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.mul_(scale)
        bad_weights = guarded_step(model, optimizer)
        if bad_weights:  # refused whole: weights and optimizer state as they were
            skipped, extra = True, {"nonfinite_weights": float(bad_weights)}
        else:
            scheduler.step()
            step += 1
    optimizer.zero_grad(set_to_none=True)
    return StepResult(
        step=step,
        loss=float(loss_sum),
        grad_norm=grad_norm,
        lr=scheduler.get_last_lr()[0],
        num_selected=batch.num_selected,
        skipped=skipped,
        seconds=time.perf_counter() - start,
        peak_memory_mib=memory.stop(),
        extra=extra,
    )


def global_grad_norm(model: torch.nn.Module, device: torch.device) -> float:
    """L2 norm of the gradient over every rank's shard."""
    squares = torch.zeros((), dtype=torch.float64, device=device)
    for p in model.parameters():
        if p.grad is None:
            continue
        g = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
        squares += g.double().pow(2).sum()
    dist.all_reduce(squares)
    return float(squares.sqrt())


def _zero_weight_like(batch: SelectedBatch) -> SelectedBatch:
    """One row of `batch` with a single zero-weight token: contributes exactly nothing."""
    one = batch.rows(0, 1)
    if one.num_selected == 0:
        return one
    idx = torch.tensor([0])
    return SelectedBatch(
        batch_id=one.batch_id, policy_version=one.policy_version, input_ids=one.input_ids,
        attention_mask=one.attention_mask, positions=one.positions[:1], weights=torch.zeros(1, device=one.weights.device),
        sampled_tokens=one.sampled_tokens[:1], teacher=index_signal(one.teacher, idx),
        teacher_sampled_logprobs=one.teacher_sampled_logprobs[:1], summary=one.summary,
    )
