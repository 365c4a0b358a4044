"""The quadrant metrics' default cut lines follow the paper: entropy clipped at its batch p98,
both axes min-max normalised, a mid line on each; checked against a float64 reference written
here from the definition (clip, normalise, compare with 0.5), not from the code's cut values."""

from __future__ import annotations

import torch

from tip_ray.config.selection import SelectionConfig
from tip_ray.tip import quadrant_labels, quadrant_summary, resolve_cut_lines
from tip_reference import minmax64, numpy_quantile


def _skewed_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    # Real statistics: most tokens near zero entropy and divergence, a long tail of a few high ones.
    entropy = torch.distributions.Exponential(3.0).sample((4, 50)) ** 2
    divergence = torch.rand((4, 50), generator=g) ** 4 * 3.0
    entropy[0, :3] = torch.tensor([40.0, 35.0, 30.0])  # outliers the p98 clip must tame
    mask = torch.rand((4, 50), generator=g) > 0.2
    return entropy.float(), divergence.float(), mask


def _reference_labels(entropy, divergence, mask) -> dict[tuple[int, int], int]:
    positions = [tuple(p) for p in mask.nonzero().tolist()]
    h = [float(entropy[p].double()) for p in positions]
    d = [float(divergence[p].double()) for p in positions]
    top = numpy_quantile(torch.tensor(h, dtype=torch.float64), 0.98)
    h_hat = minmax64([min(v, top) for v in h])
    d_hat = minmax64(d)
    labels = {}
    for p, hh, dd in zip(positions, h_hat, d_hat):
        labels[p] = {(True, True): 1, (True, False): 2, (False, True): 3, (False, False): 4}[(hh > 0.5, dd > 0.5)]
    return labels


def test_the_default_metric_cuts_are_the_papers():
    cuts = SelectionConfig().metrics_cuts
    assert (cuts.mode, cuts.entropy, cuts.divergence, cuts.entropy_clip_quantile) == ("minmax", 0.5, 0.5, 0.98)


def test_paper_cut_lines_match_a_float64_reference():
    for seed in range(3):
        entropy, divergence, mask = _skewed_batch(seed)
        cuts = resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="minmax", entropy_clip_quantile=0.98)
        labels = quadrant_labels(entropy, divergence, mask, cuts)
        reference = _reference_labels(entropy, divergence, mask)
        assert {p: int(labels[p]) for p in reference} == reference
        assert int((labels[~mask] != 0).sum()) == 0
        # Without the clip the outliers push the entropy line up and every other token below it.
        unclipped = quadrant_labels(entropy, divergence, mask,
                                    resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="minmax"))
        assert int(((unclipped == 1) | (unclipped == 2)).sum()) < int(((labels == 1) | (labels == 2)).sum())


def test_batch_medians_force_q2_equal_q3_and_the_paper_lines_do_not():
    entropy, divergence, mask = _skewed_batch(1)
    mask[:] = True  # an even count of distinct values: exactly half above each median
    medians = resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="quantile")
    median_shares = quadrant_summary(quadrant_labels(entropy, divergence, mask, medians), entropy, divergence, mask)
    assert median_shares["share_q2"] == median_shares["share_q3"]
    paper = resolve_cut_lines(entropy, divergence, mask, 0.5, 0.5, mode="minmax", entropy_clip_quantile=0.98)
    paper_shares = quadrant_summary(quadrant_labels(entropy, divergence, mask, paper), entropy, divergence, mask)
    assert paper_shares["share_q2"] != paper_shares["share_q3"]
