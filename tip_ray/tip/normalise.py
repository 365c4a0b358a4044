"""Batch-level normalisation of per-token statistics over valid (response) positions."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def masked_quantile(values: Tensor, mask: Tensor, q: float) -> float | None:
    """The q-quantile of ``values[mask]`` with linear interpolation (as numpy's default), or None if empty.

    values: [B, T] float; mask: [B, T] bool; q in [0, 1]. Unlike torch.quantile it has no
    input-size limit.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    valid = torch.sort(values[mask].double()).values
    n = valid.numel()
    if n == 0:
        return None
    position = q * (n - 1)
    lower = math.floor(position)
    upper = min(lower + 1, n - 1)
    low_value, high_value = float(valid[lower]), float(valid[upper])
    return low_value + (position - lower) * (high_value - low_value)


def clip_and_minmax(values: Tensor, mask: Tensor, clip_quantile: float | None) -> Tensor:
    """Clip at the batch ``clip_quantile`` (None: no clip), then min-max normalise to [0, 1].

    values: [B, T] float; mask: [B, T] bool. Returns [B, T] float64, 0 where ``mask`` is False
    and 0 everywhere when all valid values are equal (nothing to rank them by).
    """
    result = torch.zeros(values.shape, dtype=torch.float64, device=values.device)
    if not bool(mask.any()):
        return result
    clipped = values.double()
    if clip_quantile is not None:
        clipped = clipped.clamp(max=masked_quantile(values, mask, clip_quantile))
    valid = clipped[mask]
    low, high = valid.min(), valid.max()
    span = high - low
    if float(span) > 0.0:
        result[mask] = ((valid - low) / span).clamp(0.0, 1.0)
    return result
