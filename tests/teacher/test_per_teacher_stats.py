"""Per-teacher selection statistics against a naive float64 count written out token by token."""

from __future__ import annotations

import torch

from tip_ray.select.per_teacher import per_teacher_stats, row_teachers


def test_per_teacher_statistics_match_a_naive_count():
    gen = torch.Generator().manual_seed(0)
    B, T = 5, 7
    mask = torch.rand(B, T, generator=gen) > 0.3
    selected = mask & (torch.rand(B, T, generator=gen) > 0.5)
    entropy = torch.rand(B, T, generator=gen)
    divergence = torch.rand(B, T, generator=gen)
    labels = torch.randint(1, 5, (B, T), generator=gen) * mask
    rows = row_teachers([1, 0, 1], [2, 2, 1])  # shards of 2, 2 and 1 rows
    assert rows.tolist() == [1, 1, 0, 0, 1]
    stats = per_teacher_stats(["x", "y", "unused"], rows, mask, selected, entropy, divergence, labels)
    for t, name in enumerate(["x", "y"]):
        cells = [(b, j) for b in range(B) for j in range(T) if mask[b, j] and rows[b] == t]
        n = len(cells)
        assert stats[name]["response_tokens"] == n
        assert stats[name]["selected_fraction"] == sum(bool(selected[c]) for c in cells) / n
        assert abs(stats[name]["mean_entropy"] - sum(float(entropy[c]) for c in cells) / n) < 1e-12
        assert abs(stats[name]["mean_reverse_kl"] - sum(float(divergence[c]) for c in cells) / n) < 1e-12
        for q in range(1, 5):
            assert stats[name][f"quadrant_share_q{q}"] == sum(int(labels[c]) == q for c in cells) / n
    assert stats["unused"] == {"response_tokens": 0.0, "selected_tokens": 0.0, "selected_fraction": 0.0,
                               "mean_entropy": 0.0, "mean_reverse_kl": 0.0, **{f"quadrant_share_q{q}": 0.0
                                                                                for q in range(1, 5)}}


def test_per_teacher_statistics_become_teacher_columns_after_the_others():
    from tip_ray.pipeline.step_row import teacher_column, teacher_columns

    columns = teacher_columns({"math": {"selected_fraction": 0.5, "response_tokens": 4.0}, "code": {"selected_fraction": 0.25}})
    assert columns == {"teacher/math/selected_fraction": 0.5, "teacher/math/response_tokens": 4.0,
                       "teacher/code/selected_fraction": 0.25}
    assert teacher_column("math", "mean_reverse_kl") == "teacher/math/mean_reverse_kl"
    assert teacher_columns({}) == {}  # a run of one teacher writes no such column
