import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tip_ray.tip import RULES, keep_counts, select_tokens, selected_weights, selection_positions
from tip_reference import expected_k, minmax64, numpy_quantile, python_top_k


def _batch(seed: int, b: int = 6, t: int = 23, p_valid: float = 0.8):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, t, generator=g) < p_valid
    mask[0] = False  # all padding
    if b > 1:
        mask[1] = False
        mask[1, 5] = True  # a single-token rollout
    stats = {
        "entropy": torch.rand(b, t, generator=g),
        "reverse_kl": torch.rand(b, t, generator=g) * 2,
        "forward_kl": torch.rand(b, t, generator=g) * 2,
    }
    for value in stats.values():
        value[~mask] = float("nan")  # padding may hold anything; it must never matter
    return stats, mask


def _select(rule, stats, mask, **kw):
    return select_tokens(rule, response_mask=mask, **stats, **kw)


def _python_scores(rule: str, stats, mask, clip=0.98, divergence_clip=None):
    """Per-position scores of the ranking rules, computed in plain Python float64."""
    b, t = mask.shape
    valid = [(i, j) for i in range(b) for j in range(t) if mask[i, j]]
    h = {pos: float(stats["entropy"][pos]) for pos in valid}
    d = {pos: float(stats["reverse_kl"][pos]) for pos in valid}
    f = {pos: float(stats["forward_kl"][pos]) for pos in valid}
    if rule == "entropy_topk":
        return h
    if rule == "divergence_topk":
        return d
    h_clip = numpy_quantile(stats["entropy"][mask], clip) if clip is not None else math.inf
    h_hat = dict(zip(valid, minmax64([min(h[pos], h_clip) for pos in valid])))
    if rule == "q3_only":
        return {pos: f[pos] * (1.0 - h_hat[pos]) for pos in valid}
    d_clip = numpy_quantile(stats["reverse_kl"][mask], divergence_clip) if divergence_clip is not None else math.inf
    d_hat = dict(zip(valid, minmax64([min(d[pos], d_clip) for pos in valid])))
    return {pos: 1.0 - (1.0 - h_hat[pos]) * (1.0 - d_hat[pos]) for pos in valid}


@pytest.mark.parametrize("rule", ["entropy_topk", "divergence_topk", "soft_or", "q3_only"])
@pytest.mark.parametrize("ratio", [1.0, 0.5, 0.2, 0.1, 0.03])
def test_ranking_rules_match_python_reference(rule, ratio):
    stats, mask = _batch(seed=int(ratio * 100) + len(rule))
    selection = _select(rule, stats, mask, ratio=ratio)
    scores = _python_scores(rule, stats, mask)
    for i in range(mask.shape[0]):
        row_scores = [scores.get((i, j), 0.0) for j in range(mask.shape[1])]
        valid = mask[i].tolist()
        expected = python_top_k(row_scores, valid, expected_k(sum(valid), ratio))
        assert set(torch.nonzero(selection.mask[i]).flatten().tolist()) == expected
    assert torch.equal(selection.weights, selection.mask.float())


@pytest.mark.parametrize("divergence_clip", [0.9, 0.5])
@pytest.mark.parametrize("ratio", [0.5, 0.2])
def test_soft_or_with_a_divergence_clip_matches_python_reference(divergence_clip, ratio):
    stats, mask = _batch(seed=int(divergence_clip * 10) + int(ratio * 100))
    stats["reverse_kl"][2, 3] = 500.0  # a far-off token: without the clip it squashes every other
    stats["entropy"][2, 3] = stats["forward_kl"][2, 3] = 0.5
    mask[2, 3] = True
    selection = _select("soft_or", stats, mask, ratio=ratio, divergence_clip_quantile=divergence_clip)
    scores = _python_scores("soft_or", stats, mask, divergence_clip=divergence_clip)
    for i in range(mask.shape[0]):
        valid = [j for j in range(mask.shape[1]) if mask[i, j]]
        kept = set(torch.nonzero(selection.mask[i]).flatten().tolist())
        assert len(kept) == expected_k(len(valid), ratio) and kept <= set(valid)
        # Every token clipped at the top scores 1: a top k up to rounding, whichever of the tied.
        if kept and len(kept) < len(valid):
            lowest_kept = min(scores[(i, j)] for j in kept)
            highest_left = max(scores[(i, j)] for j in valid if j not in kept)
            assert lowest_kept >= highest_left - 1e-12
    unclipped = _select("soft_or", stats, mask, ratio=ratio)
    assert not torch.equal(selection.mask, unclipped.mask)  # the clip changes which tokens are kept
    assert torch.equal(_select("soft_or", stats, mask, ratio=ratio, divergence_clip_quantile=1.0).mask, unclipped.mask)


def test_ties_go_to_the_earlier_position():
    mask = torch.ones(2, 8, dtype=torch.bool)
    flat = torch.full((2, 8), 0.5)
    flat[1, 6] = 0.9
    zeros = torch.zeros(2, 8)
    for rule in ("entropy_topk", "soft_or"):
        sel = select_tokens(rule, entropy=flat, reverse_kl=zeros, forward_kl=zeros, response_mask=mask, ratio=0.375)
        assert torch.nonzero(sel.mask[0]).flatten().tolist() == [0, 1, 2]
        assert torch.nonzero(sel.mask[1]).flatten().tolist() == [0, 1, 6]
    sel = select_tokens("divergence_topk", entropy=zeros, reverse_kl=zeros, forward_kl=zeros, response_mask=mask, ratio=0.25)
    assert torch.nonzero(sel.mask[0]).flatten().tolist() == [0, 1]


def test_all_rule_padding_single_token_and_empty_rows():
    stats, mask = _batch(11)
    for rule in RULES:
        params = {"generator": torch.Generator().manual_seed(0)} if rule in ("random", "entropy_sample") else {}
        sel = _select(rule, stats, mask, **params)
        assert sel.mask.dtype == torch.bool and sel.weights.dtype == torch.float32
        assert not bool((sel.mask & ~mask).any()), rule
        assert not bool(sel.mask[0].any()) and float(sel.weights[0].abs().sum()) == 0.0
        assert bool(torch.isfinite(sel.weights).all())
        assert bool((sel.weights[~sel.mask] == 0).all())
    one = _select("soft_or", stats, mask, ratio=0.1)
    assert one.mask[1].tolist() == mask[1].tolist()  # floor(0.1 * 1) = 0 -> keep the one token
    assert _select("all", stats, mask).mask.equal(mask)


def test_keep_counts_floor_with_minimum_one():
    mask = torch.zeros(4, 100, dtype=torch.bool)
    mask[1, :1] = True
    mask[2, :100] = True
    mask[3, :7] = True
    assert keep_counts(mask, 0.29).tolist() == [0, 1, 29, 2]
    assert keep_counts(mask, 1.0).tolist() == [0, 1, 100, 7]


def test_positions_and_weights_helpers():
    stats, mask = _batch(4)
    sel = _select("entropy_topk", stats, mask, ratio=0.5)
    pos = selection_positions(sel)
    assert pos.shape == (sel.num_selected, 2)
    assert bool(sel.mask[pos[:, 0], pos[:, 1]].all())
    assert selected_weights(sel).shape == (sel.num_selected,)
    assert torch.equal(pos, torch.nonzero(sel.mask))  # row-major order


def test_random_rule_is_reproducible_and_sized():
    stats, mask = _batch(5, b=4, t=50)
    a = _select("random", stats, mask, ratio=0.3, generator=torch.Generator().manual_seed(1))
    b = _select("random", stats, mask, ratio=0.3, generator=torch.Generator().manual_seed(1))
    c = _select("random", stats, mask, ratio=0.3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)
    assert a.mask.sum(dim=1).tolist() == [expected_k(int(m), 0.3) for m in mask.sum(dim=1)]


def test_entropy_sample_inclusion_probabilities():
    """k = 2 draws without replacement with p ~ h: P(i in S) = p_i + sum_j p_j p_i / (1 - p_j)."""
    h = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])
    rows = 6000
    entropy = h.repeat(rows, 1)
    mask = torch.ones(rows, 5, dtype=torch.bool)
    zeros = torch.zeros(rows, 5)
    sel = select_tokens(
        "entropy_sample", entropy=entropy, reverse_kl=zeros, forward_kl=zeros, response_mask=mask,
        ratio=0.4, generator=torch.Generator().manual_seed(0),
    )
    assert sel.mask.sum(dim=1).eq(2).all()
    p = (h / h.sum()).tolist()
    for i in range(5):
        expected = p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(5) if j != i)
        observed = sel.mask[:, i].double().mean().item()
        assert observed == pytest.approx(expected, abs=0.025)
    assert not bool(sel.mask[:, 4].any())  # zero entropy is never drawn while positive ones remain


def test_entropy_sample_fills_with_zero_entropy_and_importance_weights():
    entropy = torch.tensor([[0.0, 0.5, 0.0, 0.25, 0.0, 0.0]])
    mask = torch.ones(1, 6, dtype=torch.bool)
    zeros = torch.zeros(1, 6)
    sel = select_tokens(
        "entropy_sample", entropy=entropy, reverse_kl=zeros, forward_kl=zeros, response_mask=mask,
        ratio=0.5, generator=torch.Generator().manual_seed(3), importance_weights=True,
    )
    assert sel.mask[0, 1] and sel.mask[0, 3] and sel.num_selected == 3
    mean_h = 0.75 / 6
    assert sel.weights[0, 1].item() == pytest.approx(mean_h / 0.5)
    assert sel.weights[0, 3].item() == pytest.approx(mean_h / 0.25)
    zero_picked = [j for j in (0, 2, 4, 5) if sel.mask[0, j]]
    assert len(zero_picked) == 1 and sel.weights[0, zero_picked[0]].item() == 0.0
    plain = select_tokens(
        "entropy_sample", entropy=entropy, reverse_kl=zeros, forward_kl=zeros, response_mask=mask,
        ratio=0.5, generator=torch.Generator().manual_seed(3),
    )
    assert torch.equal(plain.weights, plain.mask.float())  # importance weights are off by default


def test_quadrant_rule_keep_and_weights():
    stats, mask = _batch(8)
    sel = _select("quadrant", stats, mask, keep=(1, 3), entropy_cut=0.5, divergence_cut=1.0, cut_mode="fixed")
    weighted = _select(
        "quadrant", stats, mask, weights={1: 2.0, 2: 0.5, 3: 1.5}, entropy_cut=0.5, divergence_cut=0.5, cut_mode="quantile"
    )
    h_med = numpy_quantile(stats["entropy"][mask], 0.5)
    d_med = numpy_quantile(stats["reverse_kl"][mask], 0.5)
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            if not mask[i, j]:
                assert not sel.mask[i, j] and not weighted.mask[i, j]
                continue
            h, d = float(stats["entropy"][i, j]), float(stats["reverse_kl"][i, j])
            assert bool(sel.mask[i, j]) == (d > 1.0)  # Q1 and Q3 are exactly the high-divergence tokens
            q = (1 if d > d_med else 2) if h > h_med else (3 if d > d_med else 4)
            w = {1: 2.0, 2: 0.5, 3: 1.5, 4: 0.0}[q]
            assert weighted.weights[i, j].item() == pytest.approx(w)
            assert bool(weighted.mask[i, j]) == (w > 0)


def test_bad_input_errors():
    stats, mask = _batch(2)
    with pytest.raises(ValueError, match="valid rules: all, random, entropy_topk, entropy_sample, soft_or, q3_only"):
        _select("entropy", stats, mask)
    for ratio in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="ratio must be in \\(0, 1\\]"):
            _select("soft_or", stats, mask, ratio=ratio)
    with pytest.raises(ValueError, match="ratio must be 1.0"):
        _select("all", stats, mask, ratio=0.5)
    with pytest.raises(ValueError, match="does not take temperature; it accepts: entropy_clip_quantile"):
        _select("soft_or", stats, mask, temperature=2.0)
    with pytest.raises(ValueError, match="response mask's shape"):
        select_tokens("soft_or", entropy=stats["entropy"][:, :3], reverse_kl=stats["reverse_kl"],
                      forward_kl=stats["forward_kl"], response_mask=mask)
    with pytest.raises(ValueError, match="bool"):
        _select("soft_or", stats, mask.int())
    bad = {k: v.clone() for k, v in stats.items()}
    bad["entropy"][mask] = float("nan")
    with pytest.raises(ValueError, match="entropy has NaN"):
        _select("entropy_topk", bad, mask)
    with pytest.raises(ValueError, match="either keep or weights"):
        _select("quadrant", stats, mask, keep=(1,), weights={1: 1.0})
    with pytest.raises(ValueError, match="keys among"):
        _select("quadrant", stats, mask, weights={5: 1.0})


# ---- properties -------------------------------------------------------------------------------

@st.composite
def _batches(draw):
    b = draw(st.integers(1, 5))
    t = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(draw(st.lists(st.integers(0, t), min_size=b, max_size=b)))
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    # few distinct values so that ties are common
    entropy = torch.randint(0, 4, (b, t), generator=g).float() / 4
    reverse_kl = torch.randint(0, 4, (b, t), generator=g).float()
    forward_kl = torch.rand(b, t, generator=g)
    return {"entropy": entropy, "reverse_kl": reverse_kl, "forward_kl": forward_kl}, mask


_RANKED = ["random", "entropy_topk", "entropy_sample", "soft_or", "q3_only", "divergence_topk"]


@settings(max_examples=60, deadline=None)
@given(_batches(), st.sampled_from(_RANKED), st.floats(0.01, 1.0))
def test_property_selection_size_and_subset(batch, rule, ratio):
    stats, mask = batch
    sel = _select(rule, stats, mask, ratio=ratio, generator=torch.Generator().manual_seed(0))
    assert not bool((sel.mask & ~mask).any())
    expected = [expected_k(int(m), ratio) for m in mask.sum(dim=1)]
    assert sel.mask.sum(dim=1).tolist() == expected


@settings(max_examples=40, deadline=None)
@given(_batches(), st.sampled_from(_RANKED))
def test_property_ratio_one_equals_all(batch, rule):
    stats, mask = batch
    sel = _select(rule, stats, mask, ratio=1.0, generator=torch.Generator().manual_seed(0))
    full = _select("all", stats, mask)
    assert torch.equal(sel.mask, full.mask) and torch.equal(sel.weights, full.weights)


@settings(max_examples=60, deadline=None)
@given(_batches(), st.floats(0.01, 1.0), st.floats(0.0, 5.0))
def test_property_soft_or_without_divergence_signal_is_entropy_topk(batch, ratio, constant):
    stats, mask = batch
    flat = dict(stats, reverse_kl=torch.full_like(stats["reverse_kl"], constant))  # d^ == 0
    soft = _select("soft_or", flat, mask, ratio=ratio, entropy_clip_quantile=None)
    top = _select("entropy_topk", flat, mask, ratio=ratio)
    assert torch.equal(soft.mask, top.mask)
