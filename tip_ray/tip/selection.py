"""TIP selection rules: which response positions to train on, and with what weight.

Every rule sees per-token statistics over a batch of B rollouts padded to T positions and
returns a ``Selection`` (a mask and per-token loss weights). Positions where ``response_mask``
is False (prompt, padding) are never selected.

Budget per rollout: with m valid positions and retention ratio rho, k = floor(rho * m) (with a
1e-9 tolerance so that e.g. 0.29 * 100 gives 29). When that floor is 0 but m >= 1, one token is
kept, so that every non-empty rollout still contributes; a rollout with m = 0 gives an empty row.

Ranking rules keep the k highest scores of each rollout; ties go to the earlier position, so
the result is deterministic. Batch-level normalisation (soft_or, q3_only) uses all valid
positions of the batch: clip the entropy at its ``entropy_clip_quantile`` (0.98), then min-max;
soft_or's divergence is min-max scaled unclipped unless ``divergence_clip_quantile`` < 1.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from .normalise import clip_and_minmax
from .taxonomy import CUT_MODES, QUADRANTS, quadrant_labels, resolve_cut_lines

_RATIO_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class Selection:
    """The positions a rule keeps and their loss weights."""

    mask: Tensor
    """[B, T] bool: True at selected positions; never True where the response mask is False."""
    weights: Tensor
    """[B, T] float32: per-token loss weight, 0 where not selected (usually 1 where selected)."""

    @property
    def num_selected(self) -> int:
        return int(self.mask.sum())


def selection_positions(selection: Selection) -> Tensor:
    """[N, 2] int64 (batch, time) of the selected positions, in row-major order."""
    return selection.mask.nonzero()


def selected_weights(selection: Selection) -> Tensor:
    """[N] float32 weights of the selected positions, aligned with ``selection_positions``."""
    return selection.weights[selection.mask]


def keep_counts(response_mask: Tensor, ratio: float) -> Tensor:
    """k per rollout: floor(ratio * m), at least 1 when m >= 1, 0 when m = 0. Returns [B] int64."""
    lengths = response_mask.sum(dim=1)
    counts = torch.floor(lengths.double() * ratio + _RATIO_TOLERANCE).to(torch.int64)
    return torch.where(lengths > 0, counts.clamp(min=1), torch.zeros_like(counts))


def _top_k_per_row(scores: Tensor, tier: Tensor, counts: Tensor) -> Tensor:
    """Keep the first ``counts[b]`` positions of row b in the order (tier desc, score desc, position asc).

    scores: [B, T] float64; tier: [B, T] int64, 0 = never eligible; counts: [B]. Two stable sorts
    give the lexicographic order. Returns [B, T] bool.
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    by_tier = torch.sort(tier.gather(1, order), dim=1, descending=True, stable=True).indices
    order = order.gather(1, by_tier)
    rank = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)
    take = (rank < counts.unsqueeze(1)) & (tier.gather(1, order) > 0)
    return torch.zeros_like(take).scatter(1, order, take)


def _check_inputs(stats: dict[str, Tensor], response_mask: Tensor, needed: tuple[str, ...]) -> None:
    if not isinstance(response_mask, Tensor) or response_mask.dtype != torch.bool or response_mask.dim() != 2:
        raise ValueError(
            f"select_tokens: response_mask must be a 2-D bool tensor [B, T], got "
            f"{getattr(response_mask, 'dtype', type(response_mask).__name__)} {tuple(getattr(response_mask, 'shape', ()))}"
        )
    for name, value in stats.items():
        if not isinstance(value, Tensor) or value.shape != response_mask.shape:
            raise ValueError(
                f"select_tokens: {name} must have the response mask's shape {tuple(response_mask.shape)}, got "
                f"{tuple(getattr(value, 'shape', ())) or type(value).__name__}"
            )
    for name in needed:
        if not bool(torch.isfinite(stats[name][response_mask]).all()):
            raise ValueError(f"select_tokens: {name} has NaN or infinite values at response positions")


def _uniform(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=like.device)


def _entropy_sample(entropy: Tensor, valid: Tensor, counts: Tensor, generator, importance_weights: bool):
    """k draws without replacement with p_t proportional to h_t (Efraimidis-Spirakis keys u^(1/h)).

    Zero-entropy positions can only be drawn after all positive ones, uniformly among themselves.
    Importance weights: 1 / (m * p_t) = mean_h / h_t with p_t = h_t / sum(h) over the rollout, i.e.
    the paper's 1/p_t scaled by 1/m, so that sum(w * l) over the selection estimates the rollout's
    all-token sum times k / m. This is exact for draws with replacement and an approximation
    without replacement; a zero-entropy position gets weight 0.
    """
    weight = torch.where(valid, entropy.double(), 0.0).clamp(min=0.0)
    u = _uniform(entropy.shape, entropy, generator)
    positive = weight > 0
    keys = torch.where(positive, torch.log(u) / torch.where(positive, weight, 1.0), u)
    tier = valid.to(torch.int64) + positive.to(torch.int64)
    mask = _top_k_per_row(keys, tier, counts)
    if not importance_weights:
        return mask, mask.to(torch.float32)
    lengths = valid.sum(dim=1, keepdim=True).clamp(min=1)
    mean_entropy = weight.sum(dim=1, keepdim=True) / lengths
    inverse = torch.where(positive, mean_entropy / torch.where(positive, weight, 1.0), 0.0)
    return mask, torch.where(mask, inverse, 0.0).to(torch.float32)


def _quadrant_table(keep, weights) -> list[float]:
    """Weight of quadrants 0..4 (0 = not a response position, always 0)."""
    if weights is not None:
        if not isinstance(weights, dict) or not set(weights) <= set(QUADRANTS):
            raise ValueError(f"quadrant weights must be a dict with keys among {QUADRANTS}, got {weights!r}")
        for quadrant, value in weights.items():
            if not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(f"quadrant weight for Q{quadrant} must be finite and >= 0, got {value}")
        return [0.0] + [float(weights.get(q, 0.0)) for q in QUADRANTS]
    kept = set(keep)
    if not kept or not kept <= set(QUADRANTS):
        raise ValueError(f"quadrant keep must name one or more quadrants among {QUADRANTS}, got {keep!r}")
    return [0.0] + [1.0 if q in kept else 0.0 for q in QUADRANTS]


def _keep_top(scores: Tensor, valid: Tensor, ratio: float) -> Selection:
    """The k = keep_counts(valid, ratio) highest scores of each rollout, weight 1."""
    scores = torch.where(valid, scores, 0.0)  # padding may hold NaN; it is never eligible anyway
    mask = _top_k_per_row(scores, valid.to(torch.int64), keep_counts(valid, ratio))
    return Selection(mask=mask, weights=mask.to(torch.float32))


def _all(entropy, reverse_kl, forward_kl, valid, ratio, generator) -> Selection:
    return Selection(mask=valid.clone(), weights=valid.to(torch.float32))


def _random(entropy, reverse_kl, forward_kl, valid, ratio, generator) -> Selection:
    return _keep_top(_uniform(valid.shape, entropy, generator), valid, ratio)


def _entropy_topk(entropy, reverse_kl, forward_kl, valid, ratio, generator) -> Selection:
    return _keep_top(entropy.double(), valid, ratio)


def _entropy_sample_rule(entropy, reverse_kl, forward_kl, valid, ratio, generator, *,
                         importance_weights: bool = False) -> Selection:
    mask, weights = _entropy_sample(entropy, valid, keep_counts(valid, ratio), generator, bool(importance_weights))
    return Selection(mask=mask, weights=weights)


def _soft_or(entropy, reverse_kl, forward_kl, valid, ratio, generator, *,
             entropy_clip_quantile: float = 0.98, divergence_clip_quantile: float = 1.0) -> Selection:
    h_hat = clip_and_minmax(entropy, valid, entropy_clip_quantile)
    d_hat = clip_and_minmax(reverse_kl, valid, None if divergence_clip_quantile == 1.0 else divergence_clip_quantile)
    return _keep_top(h_hat + d_hat - h_hat * d_hat, valid, ratio)


def _q3_only(entropy, reverse_kl, forward_kl, valid, ratio, generator, *,
             entropy_clip_quantile: float = 0.98) -> Selection:
    h_hat = clip_and_minmax(entropy, valid, entropy_clip_quantile)
    return _keep_top(forward_kl.double() * (1.0 - h_hat), valid, ratio)


def _divergence_topk(entropy, reverse_kl, forward_kl, valid, ratio, generator) -> Selection:
    return _keep_top(reverse_kl.double(), valid, ratio)


def _quadrant(entropy, reverse_kl, forward_kl, valid, ratio, generator, *, keep=None, weights=None,
              entropy_cut: float = 0.5, divergence_cut: float = 0.5, cut_mode: str = "quantile",
              entropy_clip_quantile: float = 0.98, divergence_clip_quantile: float = 1.0) -> Selection:
    if weights is not None and keep is not None:
        raise ValueError("quadrant rule: give either keep or weights, not both")
    if cut_mode not in CUT_MODES:
        raise ValueError(f"unknown cut_mode {cut_mode!r}; valid modes: {', '.join(CUT_MODES)}")
    keep = (1, 2, 3) if keep is None else keep
    table = torch.tensor(_quadrant_table(keep, weights), dtype=torch.float32, device=valid.device)
    cuts = resolve_cut_lines(entropy, reverse_kl, valid, entropy_cut, divergence_cut, cut_mode,
                             clip_quantile=divergence_clip_quantile, entropy_clip_quantile=entropy_clip_quantile)
    token_weights = table[quadrant_labels(entropy, reverse_kl, valid, cuts)]
    return Selection(mask=token_weights > 0, weights=token_weights)


@dataclass(frozen=True)
class Rule:
    """One selection rule: how it picks, the statistics it reads, and whether the retention
    ratio applies (a rule that keeps what its definition says needs ratio 1)."""

    select: Callable[..., Selection]
    needs: tuple[str, ...]
    budgeted: bool = True

    def params(self) -> dict[str, Any]:
        """The rule's own parameters and their defaults."""
        return {name: p.default for name, p in inspect.signature(self.select).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}


RULES: dict[str, Rule] = {
    "all": Rule(_all, needs=(), budgeted=False),
    "random": Rule(_random, needs=()),
    "entropy_topk": Rule(_entropy_topk, needs=("entropy",)),
    "entropy_sample": Rule(_entropy_sample_rule, needs=("entropy",)),
    "soft_or": Rule(_soft_or, needs=("entropy", "reverse_kl")),
    "q3_only": Rule(_q3_only, needs=("entropy", "forward_kl")),
    "divergence_topk": Rule(_divergence_topk, needs=("reverse_kl",)),
    "quadrant": Rule(_quadrant, needs=("entropy", "reverse_kl"), budgeted=False),
}
"""Every selection rule by name: the one place a rule name meets its implementation."""


def select_tokens(
    rule: str,
    *,
    entropy: Tensor,
    reverse_kl: Tensor,
    forward_kl: Tensor,
    response_mask: Tensor,
    ratio: float = 1.0,
    generator: torch.Generator | None = None,
    **rule_params: Any,
) -> Selection:
    """Apply a TIP selection rule by name.

    entropy (normalised h), reverse_kl (delta), forward_kl: [B, T] float; response_mask: [B, T]
    bool. ratio rho in (0, 1]: per-rollout budget (see the module docstring); rules "all" and
    "quadrant" keep what their definition says and need ratio = 1. generator: source of
    randomness for "random" and "entropy_sample".

    Rules (docs/method.md): all; random; entropy_topk (highest h); entropy_sample (p_t ~ h_t,
    ``importance_weights`` False by default); soft_or (s = h^ + d^ - h^ d^, ``entropy_clip_quantile``, ``divergence_clip_quantile`` 1 = no clip);
    q3_only (forward KL * (1 - h^)); divergence_topk (highest delta); quadrant (``keep`` quadrants,
    or per-quadrant ``weights`` {1..4: w}; cut lines ``entropy_cut``, ``divergence_cut`` read as
    quantile levels when ``cut_mode`` is "quantile" (default, batch medians) or values when "fixed").
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; valid rules: {', '.join(RULES)}")
    spec = RULES[rule]
    accepted = spec.params()
    unknown = sorted(set(rule_params) - set(accepted))
    if unknown:
        raise ValueError(
            f"rule {rule!r} does not take {', '.join(unknown)}; it accepts: {', '.join(accepted) or 'no parameters'}"
        )
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    if not spec.budgeted and float(ratio) != 1.0:
        raise ValueError(f"rule {rule!r} keeps what its definition says; its ratio must be 1.0, got {ratio}")
    stats = {"entropy": entropy, "reverse_kl": reverse_kl, "forward_kl": forward_kl}
    _check_inputs(stats, response_mask, spec.needs)
    return spec.select(entropy, reverse_kl, forward_kl, response_mask, float(ratio), generator, **rule_params)
