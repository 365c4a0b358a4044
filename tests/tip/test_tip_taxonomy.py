import pytest
import torch

from tip_ray.tip import CutLines, quadrant_labels, quadrant_summary, resolve_cut_lines
from tip_reference import numpy_quantile


def _batch(seed: int, b: int = 5, t: int = 17):
    g = torch.Generator().manual_seed(seed)
    entropy = torch.rand(b, t, generator=g)
    divergence = torch.rand(b, t, generator=g) * 3
    mask = torch.rand(b, t, generator=g) < 0.7
    mask[0] = False  # an all-padding rollout
    return entropy, divergence, mask


def _python_label(h: float, d: float, cuts: CutLines) -> int:
    high_h, high_d = h > cuts.entropy, d > cuts.divergence
    if high_h and high_d:
        return 1
    if high_h:
        return 2
    if high_d:
        return 3
    return 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_match_python_rules(seed):
    entropy, divergence, mask = _batch(seed)
    cuts = CutLines(entropy=0.5, divergence=1.2)
    labels = quadrant_labels(entropy, divergence, mask, cuts)
    assert labels.dtype == torch.int64
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            expected = _python_label(float(entropy[b, t]), float(divergence[b, t]), cuts) if mask[b, t] else 0
            assert labels[b, t].item() == expected


def test_value_on_the_cut_is_low_and_zero_divergence_is_low():
    entropy = torch.tensor([[0.5, 0.6, 0.5, 0.2]])
    divergence = torch.tensor([[0.0, 0.0, 0.3, 0.0]])
    labels = quadrant_labels(entropy, divergence, torch.ones(1, 4, dtype=torch.bool), CutLines(0.5, 0.0))
    assert labels.tolist() == [[4, 2, 3, 4]]


def test_quantile_cut_lines_are_batch_quantiles_over_valid_positions():
    entropy, divergence, mask = _batch(7)
    entropy[~mask] = 100.0  # padding values must not move the quantiles
    cuts = resolve_cut_lines(entropy, divergence, mask, 0.3, 0.8, mode="quantile")
    assert cuts.entropy == pytest.approx(numpy_quantile(entropy[mask], 0.3), abs=1e-12)
    assert cuts.divergence == pytest.approx(numpy_quantile(divergence[mask], 0.8), abs=1e-12)
    fixed = resolve_cut_lines(entropy, divergence, mask, 0.3, 0.8, mode="fixed")
    assert fixed == CutLines(0.3, 0.8)


def test_summary_shares_and_means():
    entropy, divergence, mask = _batch(3)
    cuts = resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="quantile")
    labels = quadrant_labels(entropy, divergence, mask, cuts)
    summary = quadrant_summary(labels, entropy, divergence, mask)
    valid = [(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[b, t]]
    assert summary["tokens"] == len(valid)
    for q in (1, 2, 3, 4):
        members = [(b, t) for (b, t) in valid if labels[b, t].item() == q]
        assert summary[f"share_q{q}"] == pytest.approx(len(members) / len(valid))
        if members:
            mean_h = sum(float(entropy[b, t]) for b, t in members) / len(members)
            mean_d = sum(float(divergence[b, t]) for b, t in members) / len(members)
            assert summary[f"mean_entropy_q{q}"] == pytest.approx(mean_h, rel=1e-6)
            assert summary[f"mean_divergence_q{q}"] == pytest.approx(mean_d, rel=1e-6)
    assert sum(summary[f"share_q{q}"] for q in (1, 2, 3, 4)) == pytest.approx(1.0)


def test_minmax_cuts_sit_at_a_level_of_each_axis_range_over_valid_tokens():
    """The paper's "mid line on a normalised axis": min + level * (max - min), padding ignored."""
    entropy = torch.tensor([[0.1, 0.9, 5.0], [0.3, 0.2, -4.0]], dtype=torch.float64)
    divergence = torch.tensor([[2.0, 0.0, 99.0], [8.0, 4.0, -99.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [True, True, False]])  # 5.0 / -4.0 / ±99 are padding
    cuts = resolve_cut_lines(entropy, divergence, mask, 0.5, 0.25, mode="minmax")
    assert cuts.entropy == pytest.approx(0.1 + 0.5 * (0.9 - 0.1), abs=1e-12)
    assert cuts.divergence == pytest.approx(0.0 + 0.25 * (8.0 - 0.0), abs=1e-12)
    labels = quadrant_labels(entropy, divergence, mask, cuts)
    # (0.1, 2.0): 2.0 equals the cut, so low: Q4; (0.9, 0.0): Q2; (0.3, 8.0) and (0.2, 4.0): Q3
    assert labels.tolist() == [[4, 2, 0], [3, 3, 0]]
    # The range's top at a quantile (soft_or's p98 clip): linear interpolation between order statistics.
    clipped = resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="minmax", clip_quantile=0.5)
    assert clipped.entropy == pytest.approx(0.1 + 0.5 * ((0.2 + 0.3) / 2 - 0.1), abs=1e-12)
    assert clipped.divergence == pytest.approx(0.0 + 0.5 * ((2.0 + 4.0) / 2 - 0.0), abs=1e-12)
    with pytest.raises(ValueError, match="clip_quantile must be in"):
        resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="minmax", clip_quantile=0.0)
    empty = resolve_cut_lines(entropy, divergence, torch.zeros_like(mask), 0.5, 0.5, mode="minmax")
    assert (empty.entropy, empty.divergence) == (0.0, 0.0)


def test_no_valid_tokens_gives_zeros_not_nan():
    entropy, divergence = torch.rand(2, 3), torch.rand(2, 3)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    cuts = resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="quantile")
    labels = quadrant_labels(entropy, divergence, mask, cuts)
    assert labels.eq(0).all()
    summary = quadrant_summary(labels, entropy, divergence, mask)
    assert all(value == 0.0 for value in summary.values())


def test_bad_input_errors():
    e, d, m = _batch(1)
    with pytest.raises(ValueError, match="unknown cut mode 'median'"):
        resolve_cut_lines(e, d, m, 0.5, 0.5, mode="median")
    with pytest.raises(ValueError, match="in quantile mode entropy_cut is a level in \\[0, 1\\]"):
        resolve_cut_lines(e, d, m, 1.5, 0.5, mode="quantile")
    with pytest.raises(ValueError, match="in minmax mode divergence_cut is a level in \\[0, 1\\]"):
        resolve_cut_lines(e, d, m, 0.5, 2.0, mode="minmax")
    with pytest.raises(ValueError, match="same shape"):
        quadrant_labels(e, d[:, :3], m, CutLines(0.5, 0.5))
    with pytest.raises(ValueError, match="bool"):
        quadrant_labels(e, d, m.int(), CutLines(0.5, 0.5))
