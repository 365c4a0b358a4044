"""Weights that would stop being finite are never published.

Finite inputs, loss and gradients can still give non-finite weights: a learning rate large
enough that the AdamW update overflows. Every rank copies its shard of the weights and of the
optimizer state before the update; after it the ranks count non-finite weights together, and if
there is any, every rank puts its copies back, so the update is refused whole (weights, moments
and AdamW's step count unchanged) and the step is skipped like one with bad inputs. The price is
one copy of the rank's shard of weights and optimizer state while the update runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


@dataclass
class UpdateSnapshot:
    params: list[tuple[torch.Tensor, torch.Tensor]]  # (parameter's local shard, its copy)
    state: dict[torch.Tensor, dict]  # optimizer state per parameter, copied

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        with torch.no_grad():
            for live, saved in self.params:
                live.copy_(saved)
        for param in list(optimizer.state):
            if param in self.state:
                optimizer.state[param] = self.state[param]
            else:
                del optimizer.state[param]  # first update of this parameter: it had no state


def updated_parameters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The parameters an optimizer step can change (a frozen LoRA base is not among them)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def snapshot_update(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> UpdateSnapshot:
    """Copies of this rank's shard of the weights the update changes and of the optimizer state,
    taken before the update."""
    params = [(_local(p.data), _local(p.data).clone()) for p in updated_parameters(optimizer)]
    state = {
        param: {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in entry.items()}
        for param, entry in optimizer.state.items()
    }
    return UpdateSnapshot(params=params, state=state)


def count_nonfinite_weights(
    model: torch.nn.Module, group_sync: bool = True, extra: int = 0, params: list[torch.Tensor] | None = None
) -> int:
    """Non-finite values in the weights of every rank (all of the model's, or `params`), plus
    `extra` per rank (a collective when `group_sync`: every rank must call it)."""
    params = list(model.parameters()) if params is None else params
    # On the parameters' device: NCCL reduces device tensors only.
    bad = torch.full((), float(extra), dtype=torch.float64, device=params[0].device if params else "cpu")
    for p in params:
        local = _local(p.data)
        if local.numel():
            bad += (~torch.isfinite(local)).sum().to(bad)
    if group_sync and dist.is_initialized():
        dist.all_reduce(bad)
    return int(bad)


def guarded_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """optimizer.step(), undone on every rank when any rank's weights would not be finite;
    returns 0 when the update was applied, else how many values went bad (every rank calls it).
    An update too large even for the optimizer's own arithmetic (it raises an overflow error,
    maybe halfway through the parameters) counts as one bad value."""
    before = snapshot_update(model, optimizer)
    overflowed = 0
    try:
        optimizer.step()
    except (RuntimeError, OverflowError) as exc:
        if "overflow" not in str(exc):
            raise
        overflowed = 1
    bad = count_nonfinite_weights(model, extra=overflowed, params=updated_parameters(optimizer))
    if bad:
        before.restore(optimizer)
    return bad
