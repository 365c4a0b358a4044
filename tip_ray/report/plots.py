"""The run report's plots: one function per plot, each from a RunData to a Plot.

A plot whose columns are absent (an old run, a run killed before its first step, evaluation
off) comes back without an image and with the reason, which the page shows in its place.
Images are SVG: sharp at any zoom, text drawn as paths, so the page needs no font.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tip_ray.pipeline.step_row import quadrant_column
from tip_ray.report.reading import RunData

QUADRANT_MEANING = {
    1: "high h, high δ: unsure and wrong",
    2: "high h, low δ: unsure but right",
    3: "low h, high δ: confident and wrong",
    4: "low h, low δ: solved",
}
STAGES = ("rollout", "teacher", "selector")  # timed through their tokens/s columns
FAULT_COLUMNS = {
    "actor_restarts": "actor restarts",
    "resumes": "resumes",
    "skipped_steps": "skipped steps (non-finite)",
    "batches_redone": "batches trained again",
}


@dataclass(frozen=True)
class Plot:
    title: str
    svg: bytes | None  # None: nothing to draw, `missing` says why
    missing: str = ""
    wide: bool = False  # takes a whole row of the page (multi-panel figures)


def number(value: Any) -> float | None:
    """A finite float from a JSON value; None for absent, null, NaN, inf, bools and text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def series(rows: Sequence[dict[str, Any]], key: str, x_key: str = "step") -> tuple[list[float], list[float]]:
    """(x, y) over the rows where both are finite numbers."""
    xs, ys = [], []
    for row in rows:
        x, y = number(row.get(x_key)), number(row.get(key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_svg(fig) -> bytes:
    buffer = io.BytesIO()
    # No date in the file: the same run gives the same report.
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    pyplot().close(fig)
    return buffer.getvalue()


def _figure(size=(6.4, 3.6)):
    fig, ax = pyplot().subplots(figsize=size)
    ax.grid(alpha=0.3)
    return fig, ax


ABOVE = (0, 0, 1, 0.9)  # tight_layout's box when a legend sits above the axes


def _legend_above(fig) -> None:
    """One legend for both y axes of a twin-axis plot, above them, clear of both tick columns."""
    fig.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)


def _missing(title: str, columns: str, where: str = "metrics.jsonl") -> Plot:
    return Plot(title, None, f"no data: {where} has no {columns}")


def loss_and_lr(run: RunData) -> Plot:
    title = "Loss and learning rate"
    steps, loss = series(run.metrics, "loss")
    if not steps:
        return _missing(title, "'loss' values")
    fig, ax = _figure()
    ax.plot(steps, loss, color="tab:blue", marker="." if len(steps) < 50 else None, label="loss")
    ax.set(xlabel="step", ylabel="loss (selected tokens)")
    skipped = [number(r.get("step")) for r in run.metrics if r.get("skipped") is True]
    for x in (s for s in skipped if s is not None):
        ax.axvline(x, color="tab:red", alpha=0.4, lw=1)
    lr_steps, lr = series(run.metrics, "lr")
    if lr_steps:
        right = ax.twinx()
        right.plot(lr_steps, lr, color="tab:green", ls="--", label="learning rate")
        right.set_ylabel("learning rate")
        # Explicit exponents on each tick: the axis's shared "1e-3" label hides under the legend.
        right.yaxis.set_major_formatter("{x:.1e}")
        _legend_above(fig)
    ax.set_title("red lines: skipped steps" if skipped else "", fontsize=9)
    fig.tight_layout(rect=ABOVE if lr_steps else None)
    return Plot(title, to_svg(fig))


def selected_fraction(run: RunData) -> Plot:
    title = "Selected fraction of response tokens"
    steps, share = series(run.metrics, "selected_fraction")
    if not steps:
        return _missing(title, "'selected_fraction' values")
    fig, ax = _figure()
    ax.plot(steps, share, color="tab:blue", marker="." if len(steps) < 50 else None)
    ax.set(xlabel="step", ylabel="selected / response tokens", ylim=(0, 1.05))
    fig.tight_layout()
    return Plot(title, to_svg(fig))


def quadrant_shares(run: RunData) -> Plot:
    from tip_ray.sweep.report import QUADRANT_COLOURS

    title = "Quadrant shares of response tokens (TIP taxonomy)"
    keys = [quadrant_column("share", q) for q in QUADRANT_MEANING]
    rows = [r for r in run.metrics if number(r.get("step")) is not None and all(number(r.get(k)) is not None for k in keys)]
    if not rows:
        return _missing(title, "'quadrant_share_q1..q4' columns")
    fig, ax = _figure((6.4, 4.4))
    steps = [number(r["step"]) for r in rows]
    ax.stackplot(steps, *[[r[k] for r in rows] for k in keys],
                 labels=[f"Q{q} {meaning}" for q, meaning in QUADRANT_MEANING.items()],
                 colors=[QUADRANT_COLOURS[q] for q in QUADRANT_MEANING], alpha=0.8)
    ax.set(xlabel="step", ylabel="share of response tokens", ylim=(0, 1), xlim=(min(steps), max(steps) or 1))
    # Below the axes: inside, it would hide the bottom quadrant's band.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, frameon=False)
    fig.tight_layout()
    return Plot(title, to_svg(fig))


def entropy_and_divergence(run: RunData) -> Plot:
    title = "Mean student entropy and teacher–student divergence"
    h_steps, entropy = series(run.metrics, "mean_entropy")
    d_steps, divergence = series(run.metrics, "mean_reverse_kl")
    if not h_steps and not d_steps:
        return _missing(title, "'mean_entropy' or 'mean_reverse_kl' values")
    fig, ax = _figure()
    ax.plot(h_steps, entropy, color="tab:purple", label="mean entropy h (normalised)")
    ax.set(xlabel="step", ylabel="entropy h")
    right = ax.twinx()
    right.plot(d_steps, divergence, color="tab:orange", label="mean reverse KL δ (nats)")
    right.set_ylabel("reverse KL δ (nats)")
    _legend_above(fig)
    fig.tight_layout(rect=ABOVE)
    return Plot(title, to_svg(fig))


def _stderr(row: dict[str, Any]) -> float:
    n = row.get("n")
    value = number(row.get(f"mean@{n}_stderr")) if n is not None else None
    return value if value is not None else 0.0


def eval_accuracy(run: RunData) -> Plot:
    title = "Evaluation accuracy (± 1 standard error)"
    rows = [r for r in run.evals if number(r.get("step")) is not None and number(r.get("accuracy")) is not None]
    train_steps, train_acc = series(run.metrics, "train_accuracy")
    if not rows and not train_steps:
        return _missing(title, "evaluations with an 'accuracy'", where="evals.jsonl")
    fig, ax = _figure()
    if rows:
        benchmark = rows[-1].get("benchmark", "")
        ax.errorbar([r["step"] for r in rows], [r["accuracy"] for r in rows], yerr=[_stderr(r) for r in rows],
                    fmt="o-", capsize=4, color="tab:blue", label=f"held-out {benchmark}".strip())
    if train_steps:
        ax.plot(train_steps, train_acc, color="tab:gray", alpha=0.6, lw=1, label="training rollouts")
    failed = [r for r in run.evals if r.get("error")]
    ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02),
           title=f"{len(failed)} evaluation(s) failed: {failed[-1]['error']}" if failed else "")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Plot(title, to_svg(fig))


def stage_seconds(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Seconds per step of each stage: tokens over the stage's tokens/s, where only rates were
    logged; the learner's and the weight sync's own seconds; the whole step's."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    for stage in STAGES:
        xs, ys = [], []
        for row in rows:
            step, tokens, rate = (number(row.get(k)) for k in ("step", "response_tokens", f"{stage}_tokens_per_s"))
            if step is not None and tokens is not None and rate:
                xs.append(step)
                ys.append(tokens / rate)
        found[stage] = (xs, ys)
    found["learner"] = series(rows, "learner_seconds")
    found["weight sync"] = series(rows, "weight_sync_seconds")
    found["whole step (wall)"] = series(rows, "step_seconds")
    return {name: xy for name, xy in found.items() if xy[0]}


def stage_times(run: RunData) -> Plot:
    title = "Time per step by stage"
    stages = stage_seconds(run.metrics)
    if not stages:
        return _missing(title, "timing columns (step_seconds, learner_seconds, <stage>_tokens_per_s)")
    fig, ax = _figure()
    for name, (xs, ys) in stages.items():
        ax.plot(xs, ys, label=name, color="black" if name.startswith("whole") else None,
                ls="--" if name.startswith("whole") else "-")
    ax.set(xlabel="step", ylabel="seconds", ylim=(0, None),
           title="stages overlap (pipelined): they need not add up to the step")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Plot(title, to_svg(fig))


LAG_COLUMNS = {
    "policy_lag": "policy lag (versions)",
    "selector_lag": "selector lag (versions)",
    "queue_in_flight": "batches in flight",
}


def _counts(run: RunData, title: str, columns: dict[str, str], missing: str, ylabel: str,
            totals: bool = False) -> Plot:
    """Whole-number columns as steps over the training steps; with `totals`, each label ends in
    its last value and an all-zero plot says so."""
    lines = {label: series(run.metrics, key) for key, label in columns.items()}
    lines = {label: xy for label, xy in lines.items() if xy[0]}
    if not lines:
        return _missing(title, missing)
    fig, ax = _figure()
    for label, (xs, ys) in lines.items():
        ax.step(xs, ys, where="post", label=f"{label}: {ys[-1]:.0f}" if totals else label)
    top = max(max(ys) for _, ys in lines.values())
    ax.set(xlabel="step", ylabel=ylabel, ylim=(-0.2, top + 1),
           title="none in this run" if totals and top == 0 else "")
    ax.title.set_fontsize(9)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Plot(title, to_svg(fig))


def lag_and_queue(run: RunData) -> Plot:
    return _counts(run, "Policy lag and queue depth", LAG_COLUMNS, "'policy_lag' or 'queue_in_flight' values", "count")


def faults(run: RunData) -> Plot:
    return _counts(run, "Restarts, resumes and skipped steps (running totals)", FAULT_COLUMNS,
                   "fault counters (actor_restarts, skipped_steps, ...)", "count so far", totals=True)


def learner_memory(run: RunData) -> Plot:
    title = "Learner peak memory"
    steps, mib = series(run.metrics, "learner_peak_mib")
    if not steps:
        return _missing(title, "'learner_peak_mib' values")
    fig, ax = _figure()
    ax.plot(steps, mib, color="tab:brown")
    ax.set(xlabel="step", ylabel="MiB (peak so far)", ylim=(0, max(mib) * 1.1 or 1))
    fig.tight_layout()
    return Plot(title, to_svg(fig))


RUN_PLOTS: tuple[Callable[[RunData], Plot], ...] = (
    loss_and_lr, selected_fraction, quadrant_shares, entropy_and_divergence, eval_accuracy,
    stage_times, lag_and_queue, faults, learner_memory,
)


def run_plots(run: RunData) -> list[Plot]:
    return [make(run) for make in RUN_PLOTS]
