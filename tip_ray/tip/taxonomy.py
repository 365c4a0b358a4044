"""The TIP taxonomy: a quadrant per token from (entropy h, divergence delta).

    Q1: high h, high delta (unsure and wrong)     Q2: high h, low delta (unsure but right)
    Q3: low h, high delta (confident and wrong)   Q4: low h, low delta (solved)

"High" means strictly above the cut line, so a value equal to the cut is low (a divergence of
exactly 0 is low under a cut of 0). Cut lines are fixed numbers, batch quantiles over the valid
positions, or levels on each axis's batch range (min-max normalised: 0.5 = mid-range). The
paper gives no numbers, a "mid" line on each normalised axis, the axes being the ones soft_or
scores on: entropy clipped at its batch p98, then min-max; divergence min-max. That is mode
"minmax" at 0.5 / 0.5 with ``entropy_clip_quantile`` 0.98 (the metrics' default). Batch medians
(mode "quantile" at 0.5) split each axis in halves, which forces Q2 and Q3 to the same share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .normalise import masked_quantile

CUT_MODES = ("fixed", "quantile", "minmax")
QUADRANTS = (1, 2, 3, 4)
# The per-quadrant statistics of quadrant_summary, keyed "<stat>_q<quadrant>" (quadrant_key).
QUADRANT_STATS = ("share", "mean_entropy", "mean_divergence")


@dataclass(frozen=True)
class CutLines:
    """Resolved numeric cut lines: a token is high on an axis when its value is above the line."""

    entropy: float
    """Cut on normalised entropy h (in [0, 1])."""
    divergence: float
    """Cut on the divergence delta (nats)."""


def _check_pair(entropy: Tensor, divergence: Tensor, mask: Tensor, where: str) -> None:
    if entropy.shape != divergence.shape or entropy.shape != mask.shape:
        raise ValueError(
            f"{where}: entropy {tuple(entropy.shape)}, divergence {tuple(divergence.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"{where}: mask must be a bool tensor, got {mask.dtype}")


def resolve_cut_lines(
    entropy: Tensor, divergence: Tensor, mask: Tensor, entropy_cut: float, divergence_cut: float, mode: str = "fixed",
    clip_quantile: float = 1.0, entropy_clip_quantile: float | None = None,
) -> CutLines:
    """Numeric cut lines for a batch.

    mode "fixed": the cuts are the numbers given. mode "quantile": the cuts are read as quantile
    levels in [0, 1] and resolved to the batch quantiles of entropy / divergence over ``mask``
    (0.5 = the batch median). mode "minmax": levels in [0, 1] of each axis's range over ``mask``
    (min + level * (max - min); 0.5 = mid-range), where max is the ``clip_quantile`` quantile
    (1.0 = the maximum; 0.98 = soft_or's clip, so a long tail does not push every token below
    the line); ``entropy_clip_quantile``, when given, replaces it on the entropy axis only (the
    paper clips entropy alone). With no valid position, the quantile and minmax modes give CutLines(0, 0), which
    labels nothing anyway.
    entropy, divergence: [B, T] float; mask: [B, T] bool.
    """
    _check_pair(entropy, divergence, mask, "resolve_cut_lines")
    if mode == "fixed":
        return CutLines(entropy=float(entropy_cut), divergence=float(divergence_cut))
    if mode not in CUT_MODES:
        raise ValueError(f"unknown cut mode {mode!r}; valid modes: {', '.join(CUT_MODES)}")
    for name, level in (("entropy_cut", entropy_cut), ("divergence_cut", divergence_cut)):
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"in {mode} mode {name} is a level in [0, 1], got {level}")
    if mode == "minmax":
        if not bool(mask.any()):
            return CutLines(entropy=0.0, divergence=0.0)
        entropy_clip = clip_quantile if entropy_clip_quantile is None else entropy_clip_quantile
        for name, q in (("clip_quantile", clip_quantile), ("entropy_clip_quantile", entropy_clip)):
            if not 0.0 < q <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {q}")
        lines = []
        for values, level, q in ((entropy, entropy_cut, entropy_clip), (divergence, divergence_cut, clip_quantile)):
            low = float(values[mask].double().min())
            high = masked_quantile(values, mask, q)
            lines.append(low + level * (high - low))
        return CutLines(entropy=lines[0], divergence=lines[1])
    entropy_line = masked_quantile(entropy, mask, entropy_cut)
    divergence_line = masked_quantile(divergence, mask, divergence_cut)
    if entropy_line is None or divergence_line is None:
        return CutLines(entropy=0.0, divergence=0.0)
    return CutLines(entropy=entropy_line, divergence=divergence_line)


def quadrant_labels(entropy: Tensor, divergence: Tensor, mask: Tensor, cuts: CutLines) -> Tensor:
    """Quadrant 1..4 per position, 0 where ``mask`` is False.

    entropy, divergence: [B, T] float; mask: [B, T] bool. Returns [B, T] int64.
    """
    _check_pair(entropy, divergence, mask, "quadrant_labels")
    high_h = entropy.double() > cuts.entropy
    high_d = divergence.double() > cuts.divergence
    # (high h, high d) -> 1, (high, low) -> 2, (low, high) -> 3, (low, low) -> 4
    labels = 4 - 2 * high_h.to(torch.int64) - high_d.to(torch.int64)
    return torch.where(mask, labels, torch.zeros_like(labels))


def quadrant_key(stat: str, quadrant: int) -> str:
    """The key of one quadrant statistic in quadrant_summary ("share_q3"): its one spelling."""
    if stat not in QUADRANT_STATS or quadrant not in QUADRANTS:
        raise KeyError(f"no quadrant statistic {stat!r} for quadrant {quadrant!r}: the statistics are "
                       f"{QUADRANT_STATS} over quadrants {QUADRANTS}")
    return f"{stat}_q{quadrant}"


def quadrant_summary(labels: Tensor, entropy: Tensor, divergence: Tensor, mask: Tensor) -> dict[str, float]:
    """Per-batch metrics: share_q1..q4 (fractions of valid tokens), mean_entropy_q*, mean_divergence_q*.

    The mean of an empty quadrant is reported as 0.0 (its share is 0.0), never NaN. "tokens" is the
    number of valid positions.
    """
    _check_pair(entropy, divergence, mask, "quadrant_summary")
    if labels.shape != mask.shape:
        raise ValueError(f"quadrant_summary: labels {tuple(labels.shape)} and mask {tuple(mask.shape)} differ in shape")
    total = int(mask.sum())
    summary: dict[str, float] = {"tokens": float(total)}
    for quadrant in QUADRANTS:
        members = mask & (labels == quadrant)
        count = int(members.sum())
        summary[quadrant_key("share", quadrant)] = count / total if total else 0.0
        summary[quadrant_key("mean_entropy", quadrant)] = float(entropy[members].double().mean()) if count else 0.0
        summary[quadrant_key("mean_divergence", quadrant)] = float(divergence[members].double().mean()) if count else 0.0
    return summary
