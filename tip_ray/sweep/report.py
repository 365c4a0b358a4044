"""The sweep report: a Markdown table per variant (mean ± std over seeds) and PNG plots."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from tip_ray.sweep.runner import RunRecord
from tip_ray.tip.taxonomy import QUADRANTS
from tip_ray.sweep.token_map import TokenMap

QUADRANT_COLOURS = {1: "tab:red", 2: "tab:orange", 3: "tab:purple", 4: "tab:gray"}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def group(records: Sequence[RunRecord], order: Sequence[str]) -> dict[str, list[RunRecord]]:
    by_label: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_label[r.label].append(r)
    return {label: by_label[label] for label in order if by_label.get(label)}


def _num(value: float) -> str:
    return "—" if value != value else f"{value:.3f}"  # NaN: not evaluated


def paired_table(groups: dict[str, list[RunRecord]], baseline: str, start: float | None) -> list[str]:
    """Each variant against `baseline` within a seed (a seed fixes the prompts and the first
    rollouts of every variant, so these differences are far less noisy than the spread across
    seeds), and the share of the baseline's gain over `start` (the accuracy before training)."""
    return _paired(groups, baseline, lambda r: r.final_accuracy, "accuracy",
                   (lambda r: start) if start is not None else None, "share of the gain")


def paired_kl_table(groups: dict[str, list[RunRecord]], baseline: str) -> list[str]:
    """The same pairing on the held-out reverse KL (lower is better), with each variant's share
    of the baseline's reduction of it."""
    return _paired(groups, baseline, lambda r: r.final_kl, "held-out reverse KL",
                   lambda r: r.initial_kl, "share of the reduction")


def _paired(groups: dict[str, list[RunRecord]], baseline: str, value, name: str, start_of, share_name: str) -> list[str]:
    base = {r.seed: r for r in groups.get(baseline, []) if value(r) is not None}
    if not base:
        return []
    header = f"| variant | tokens | Δ {name} vs {baseline} (per seed) | mean Δ ± std | standard error of mean Δ |"
    lines = [header + (f" {share_name} |" if start_of is not None else ""),
             "|---|---|---|---|---|" + ("---|" if start_of is not None else "")]
    for label, runs in groups.items():
        if label == baseline:
            continue
        paired = sorted((r.seed, r) for r in runs if value(r) is not None and r.seed in base)
        if not paired:
            continue
        deltas = [value(r) - value(base[seed]) for seed, r in paired]
        mean, sd = mean_std(deltas)
        share, _ = mean_std([r.tokens_trained / max(r.response_tokens, 1) for r in runs])
        per_seed = " / ".join(f"{d:+.3f} (s{seed})" for (seed, _), d in zip(paired, deltas))
        standard_error = sd / len(deltas) ** 0.5 if len(deltas) > 1 else float("nan")
        row = f"| {label} | {share:.0%} | {per_seed} | {mean:+.3f} ± {sd:.3f} | {_num(standard_error)} |"
        if start_of is not None:
            starts = [start_of(base[seed]) for seed, _ in paired]
            if any(v is None for v in starts):
                row += " — |"
            else:
                # Both gains are measured from the same start on the same seeds.
                base_gain = statistics.fmean(value(base[seed]) - v for (seed, _), v in zip(paired, starts))
                gain = statistics.fmean(value(r) - v for (_, r), v in zip(paired, starts))
                row += f" {gain / base_gain:.0%} |" if base_gain else " — |"
        lines.append(row)
    return lines


def table(groups: dict[str, list[RunRecord]], start: float | None = None) -> list[str]:
    with_accuracy, with_kl = shown_measures([r for runs in groups.values() for r in runs], start)
    kl_head, kl_rule = (" held-out reverse KL before | after (mean ± std) |", "---|---|") if with_kl else ("", "")
    acc_head, acc_rule = (" student accuracy before | after (mean ± std) |", "---|---|") if with_accuracy else ("", "")
    lines = [
        f"| variant | seeds |{acc_head}{kl_head} tokens trained | "
        "share of sampled | peak learner MiB | wall s | Q1 | Q2 | Q3 | Q4 |",
        f"|---|---|{acc_rule}{kl_rule}---|---|---|---|---|---|---|---|",
    ]
    for label, runs in groups.items():
        before, _ = mean_std([r.initial_accuracy for r in runs])
        if before != before and start is not None:  # not evaluated in the runs: the common start
            before = start
        after, after_sd = mean_std([r.final_accuracy for r in runs])
        tokens, _ = mean_std([r.tokens_trained for r in runs])
        share, _ = mean_std([r.tokens_trained / max(r.response_tokens, 1) for r in runs])
        peak, _ = mean_std([r.peak_learner_mib for r in runs])
        wall, _ = mean_std([r.wall_seconds for r in runs])
        quads = [mean_std([r.quadrant_shares[f"q{q}"] for r in runs])[0] for q in QUADRANTS]
        measured = f" {_num(before)} | {after:.3f} ± {after_sd:.3f} |" if with_accuracy else ""
        if with_kl:
            kl_before, _ = mean_std([r.initial_kl for r in runs])
            kl_after, kl_sd = mean_std([r.final_kl for r in runs])
            measured += f" {_num(kl_before)} | {kl_after:.3f} ± {kl_sd:.3f} |"
        lines.append(
            f"| {label} | {len(runs)} |{measured} {tokens:,.0f} | "
            f"{share:.0%} | {peak:.0f} | {wall:.0f} | " + " | ".join(f"{q:.1%}" for q in quads) + " |"
        )
    return lines


def plot_accuracy_vs_tokens(groups: dict[str, list[RunRecord]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, runs in groups.items():
        tokens = [r.tokens_trained for r in runs]
        accs = [r.final_accuracy for r in runs if r.final_accuracy is not None]
        if not accs:
            continue
        m, sd = mean_std(accs)
        left.errorbar(statistics.fmean(tokens), m, yerr=sd, fmt="o", capsize=3, label=label)
        # Mean curve over seeds (evaluations happen at the same steps in every run).
        curves = [r.curve for r in runs if r.curve]
        if curves:
            length = min(len(c) for c in curves)
            xs = [statistics.fmean(c[i][0] for c in curves) for i in range(length)]
            ys = [statistics.fmean(c[i][1] for c in curves) for i in range(length)]
            right.plot(xs, ys, marker=".", label=label)
    left.set(xlabel="selected tokens trained on (whole run)", ylabel="final student accuracy",
             title="Final accuracy vs tokens (mean ± std over seeds)")
    right.set(xlabel="selected tokens trained so far", ylabel="student accuracy (eval)",
              title="Accuracy during training (mean over seeds)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


TOKEN_MAP_COLUMNS = 3


def plot_token_map(token_map: TokenMap, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = token_map.views
    # At most three views a row: five side by side made a picture too wide to read on a page.
    columns = min(len(views), TOKEN_MAP_COLUMNS)
    rows = -(-len(views) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 5 * rows), squeeze=False)
    for unused in axes.flat[len(views):]:
        unused.set_visible(False)
    h, d = token_map.entropy.numpy(), token_map.divergence.numpy()
    for ax, view in zip(axes.flat, views):
        q = view.quadrant.numpy()
        shares = view.shares()
        for label in QUADRANTS:
            keep = q == label
            ax.scatter(h[keep], d[keep], s=5, alpha=0.5, color=QUADRANT_COLOURS[label],
                       label=f"Q{label} ({shares[label]:.0%})")
        ax.axvline(view.entropy_cut, color="black", lw=0.8, ls="--")
        ax.axhline(view.divergence_cut, color="black", lw=0.8, ls="--")
        ax.set(xlabel="student entropy h (normalised)", ylabel="reverse KL δ (nats)", yscale="symlog",
               title=f"{len(h)} student tokens before training\n{view.title}")
        ax.legend(markerscale=3, fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def token_map_table(token_map: TokenMap) -> list[str]:
    lines = ["| cut lines | entropy line | divergence line (nats) | Q1 | Q2 | Q3 | Q4 |", "|---|---|---|---|---|---|---|"]
    for view in token_map.views:
        shares = view.shares()
        lines.append(f"| {view.title} | {view.entropy_cut:.3g} | {view.divergence_cut:.3g} | "
                     + " | ".join(f"{shares[q]:.1%}" for q in QUADRANTS) + " |")
    return lines


DISCUSSION_FILE = "discussion.md"
def shown_measures(records: Sequence[RunRecord], start_accuracy: float | None) -> tuple[bool, bool]:
    """(whether the report shows accuracy, whether it shows the held-out reverse KL)."""
    with_accuracy = start_accuracy is not None or any(r.final_accuracy is not None for r in records)
    return with_accuracy, any(r.final_kl is not None for r in records)


def write_report(records: Sequence[RunRecord], order: Sequence[str], report_dir: Path, *,
                 command: str, token_map: TokenMap | None, notes: str = "",
                 start_accuracy: float | None = None) -> Path:
    """`start_accuracy`: the student's accuracy before any training, when every run starts
    from the same student (the demo); fills the table's "before" column and the gain shares."""
    groups = group(records, order)
    with_accuracy, with_kl = shown_measures(records, start_accuracy)
    lines = ["# Sweep report", "", f"Produced by: `{command}`", ""]
    if with_accuracy:
        lines.append("Student accuracy is greedy accuracy on the held-out evaluation set of the run's benchmark "
                     "(before = at step 0, after = at the last step).")
    if with_kl:
        lines.append("Held-out reverse KL is KL(student || teacher) in nats per token, on the student's own "
                     "samples of held-out prompts (before = the student every run starts from, sampled with the "
                     "run's seed; after = the run's final model); lower is closer to the teacher.")
    lines += [
        "Tokens trained = selected tokens summed over the run. Peak learner memory is the learner rank's peak "
        "resident set (CPU) or allocator peak (GPU). Quadrant shares are the mean over steps of each quadrant's "
        "share of response tokens, under the run's quadrant cut lines (`selection.metrics_cuts`).",
        "",
        *table(groups, start_accuracy),
        "",
    ]
    if with_accuracy:
        plot_accuracy_vs_tokens(groups, report_dir / "accuracy_vs_tokens.png")
        lines += ["![accuracy vs tokens](accuracy_vs_tokens.png)", ""]
        paired = paired_table(groups, order[0], start_accuracy) if order else []
        if paired:
            lines += [f"Paired by seed against `{order[0]}` (the first variant):", "", *paired, ""]
    if with_kl:
        paired = paired_kl_table(groups, order[0]) if order else []
        if paired:
            lines += [f"Held-out reverse KL paired by seed against `{order[0]}` (negative Δ: closer to the "
                      "teacher than it):", "", *paired, ""]
    if token_map is not None:
        plot_token_map(token_map, report_dir / "token_map.png")
        lines += ["![entropy vs divergence](token_map.png)", "",
                  f"Quadrant shares of these {token_map.entropy.numel()} tokens (the student's own samples "
                  "before training) under each choice of cut lines:", "", *token_map_table(token_map), ""]
    if notes:
        lines += [notes, ""]
    # Written by people, not by the sweep: kept in its own file so regenerating never loses it.
    discussion = report_dir / DISCUSSION_FILE
    if discussion.is_file():
        lines += [discussion.read_text().rstrip(), ""]
    out = report_dir / "README.md"
    out.write_text("\n".join(lines))
    return out
