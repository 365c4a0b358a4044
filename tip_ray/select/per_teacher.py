"""Selection statistics per teacher, for a batch whose rows came from several teachers: for each
teacher, its response tokens, the fraction of them selected, their mean entropy and divergence,
and their quadrant shares (under the batch's own cut lines, so the teachers compare)."""

from __future__ import annotations

from typing import Sequence

import torch

from tip_ray.tip import quadrant_summary
from tip_ray.tip.taxonomy import QUADRANTS, quadrant_key


def row_teachers(shard_teachers: Sequence[int], shard_rows: Sequence[int]) -> torch.Tensor:
    """[B] teacher index of each row of the merged batch, from each shard's teacher and row count."""
    return torch.repeat_interleave(torch.tensor(list(shard_teachers), dtype=torch.long),
                                   torch.tensor(list(shard_rows), dtype=torch.long))


def per_teacher_stats(names: Sequence[str], rows_teacher: torch.Tensor, mask: torch.Tensor,
                      selected: torch.Tensor, entropy: torch.Tensor, reverse_kl: torch.Tensor,
                      labels: torch.Tensor) -> dict[str, dict[str, float]]:
    """name -> statistics over that teacher's response positions ([B, T] tensors; a teacher with
    no token in the batch has zeros, and response_tokens 0 says so)."""
    out = {}
    for t, name in enumerate(names):
        mine = mask & (rows_teacher == t)[:, None]
        count = int(mine.sum())
        quadrants = quadrant_summary(labels, entropy, reverse_kl, mine)
        stats = {
            "response_tokens": float(count),
            "selected_tokens": float((selected & mine).sum()),
            "selected_fraction": float((selected & mine).sum()) / count if count else 0.0,
            "mean_entropy": float(entropy[mine].double().mean()) if count else 0.0,
            "mean_reverse_kl": float(reverse_kl[mine].double().mean()) if count else 0.0,
        }
        for q in QUADRANTS:
            stats[f"quadrant_share_q{q}"] = quadrants[quadrant_key("share", q)]
        out[name] = stats
    return out
