"""Naive float64 references for the TIP core tests: explicit softmax, explicit sums, Python loops.

Written independently of tip_ray.tip (no shared helpers) so that the tests can catch its bugs.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def softmax64(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax in float64 by explicit exponentials and sums."""
    z = logits.double()
    shifted = z - z.max(dim=-1, keepdim=True).values
    e = torch.exp(shifted)
    return e / e.sum(dim=-1, keepdim=True)


def kl64(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row, sum over p > 0 of p * (log p - log q)."""
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(dim=-1)


def entropy64(p: torch.Tensor) -> torch.Tensor:
    terms = torch.where(p > 0, -p * torch.log(p), torch.zeros_like(p))
    return terms.sum(dim=-1)


def jsd64(p: torch.Tensor, q: torch.Tensor, beta: float) -> torch.Tensor:
    """GKD generalized JSD with the beta = 0 / 1 end points as forward / reverse KL."""
    if beta == 0.0:
        return kl64(q, p)
    if beta == 1.0:
        return kl64(p, q)
    m = beta * q + (1 - beta) * p
    return beta * kl64(q, m) + (1 - beta) * kl64(p, m)


def divergence64(p: torch.Tensor, q: torch.Tensor, kind: str, beta: float = 0.5) -> torch.Tensor:
    if kind == "reverse_kl":
        return kl64(p, q)
    if kind == "forward_kl":
        return kl64(q, p)
    return jsd64(p, q, beta)


FLOAT32_TINY = 1.1754943508222875e-38  # documented floor of both tail buckets


def buckets64(p: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Mass on each of the k named tokens, then the sum of the other entries (at least FLOAT32_TINY)."""
    rows = []
    for i in range(p.shape[0]):
        row, chosen = p[i].tolist(), indices[i].tolist()
        named = [row[j] for j in chosen]
        excluded = set(chosen)
        others = [row[j] for j in range(len(row)) if j not in excluded]
        rows.append(named + [max(math.fsum(others), FLOAT32_TINY)])
    return torch.tensor(rows, dtype=torch.float64).reshape(p.shape[0], indices.shape[1] + 1)


def teacher_buckets64(topk_logprobs: torch.Tensor, tail_logprob: torch.Tensor) -> torch.Tensor:
    tail = torch.exp(tail_logprob.double()).clamp(min=FLOAT32_TINY).unsqueeze(1)
    b = torch.cat([torch.exp(topk_logprobs.double()), tail], dim=1)
    return b / b.sum(dim=-1, keepdim=True)


def python_top_k(scores: list[float], valid: list[bool], k: int) -> set[int]:
    """The k valid positions with the highest score; earlier position first among equals."""
    candidates = [t for t in range(len(scores)) if valid[t]]
    ranked = sorted(candidates, key=lambda t: (-scores[t], t))
    return set(ranked[:k])


def expected_k(m: int, ratio: float) -> int:
    if m == 0:
        return 0
    return max(1, math.floor(round(ratio * m, 9)))


def numpy_quantile(values: torch.Tensor, q: float) -> float:
    return float(np.quantile(values.double().numpy(), q))


def minmax64(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    if high == low:
        return [0.0 for _ in values]
    return [(v - low) / (high - low) for v in values]


def bucket_probs_t(p: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Differentiable float64 bucket masses: p at the named ids, then 1 - their sum (>= FLOAT32_TINY)."""
    named = torch.gather(p, 1, indices)
    tail = (1.0 - named.sum(dim=-1, keepdim=True)).clamp(min=FLOAT32_TINY)
    return torch.cat([named, tail], dim=-1)


def python_bucket_of(indices: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Column of each token among its row's top-k ids, or k for the tail."""
    out = []
    for row, token in zip(indices.tolist(), tokens.tolist()):
        out.append(row.index(token) if token in row else len(row))
    return torch.tensor(out, dtype=torch.int64)
