"""Per-step metrics: the typed row of a step (pipeline.step_row), one JSON line per step (appended, so a resumed run continues the file),
optional TensorBoard scalars, and the progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from tip_ray.pipeline.step_row import QuadrantStats, StepCounters, StepRow, teacher_columns
from tip_ray.records import SelectionSummary, StepResult


def step_metrics(
    result: StepResult,
    summary: SelectionSummary,
    *,
    learner_version: int,
    signal_form: str,
    signal_exact: bool,
    rollout_seconds: float,
    teacher_seconds: float,
    step_seconds: float,
    in_flight: int,
    accuracy: float | None,
    prompt_rows: Sequence[int],
    weight_sync: str,
    weight_sync_seconds: float,
    counters: StepCounters,
    environment: Mapping[str, float] | None = None,
) -> StepRow:
    n_resp = max(summary.num_response_tokens, 1)
    return StepRow(
        step=result.step,
        batch_id=summary.batch_id,
        loss=result.loss,
        grad_norm=result.grad_norm,
        lr=result.lr,
        skipped=result.skipped,
        selected_tokens=summary.num_selected,
        response_tokens=summary.num_response_tokens,
        selected_fraction=summary.num_selected / n_resp,
        mean_entropy=summary.mean_entropy,
        mean_reverse_kl=summary.mean_reverse_kl,
        teacher_signal=signal_form,
        teacher_signal_exact=signal_exact,
        stats_approximate=summary.approximate,
        policy_lag=learner_version - summary.policy_version,
        selector_lag=learner_version - summary.selector_version,
        rollout_tokens_per_s=_rate(summary.num_response_tokens, rollout_seconds),
        teacher_tokens_per_s=_rate(summary.num_response_tokens, teacher_seconds),
        selector_tokens_per_s=_rate(summary.num_response_tokens, summary.seconds),
        learner_tokens_per_s=_rate(summary.num_selected, result.seconds),
        tokens_per_s=_rate(summary.num_response_tokens, step_seconds),
        queue_in_flight=in_flight,
        learner_peak_mib=result.peak_memory_mib,
        step_seconds=step_seconds,
        learner_seconds=result.seconds,
        train_accuracy=accuracy,
        quadrants=QuadrantStats.from_summary(summary.quadrants),
        prompt_rows=tuple(prompt_rows),
        weight_sync=weight_sync,
        weight_sync_seconds=weight_sync_seconds,
        counters=counters,
        environment=dict(environment or {}),
        teachers=teacher_columns(summary.per_teacher),
    )


def _rate(tokens: float, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else math.nan


class MetricsLog:
    """`trackers`: experiment trackers (tip_ray.pipeline.trackers) that get every row too."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, trackers: Sequence = (),
                 tracker_timeout_s: float = 60.0):
        self.path = run_dir / "metrics.jsonl"
        self._writer = None
        self._trackers = list(trackers)
        self._tracker_timeout_s = tracker_timeout_s
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, allow_nan=True) + "\n")
        if self._writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
                    self._writer.add_scalar(key, value, row.get("step", 0))
            self._writer.flush()
        for tracker in self._trackers:
            tracker.log(row)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for tracker in self._trackers:
            tracker.close(self._tracker_timeout_s)
        self._trackers = []


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Progress:
    """A tqdm bar showing step, tokens/s, loss, selected fraction and accuracy when evaluated."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="distill", unit="step", dynamic_ncols=True)
        self.last_eval: float | None = None

    def update(self, row: dict[str, Any]) -> None:
        if self.bar is None:
            return
        post = {
            "loss": f"{row['loss']:.4f}",
            "tok/s": f"{row['tokens_per_s']:.0f}",
            "sel": f"{row['selected_fraction']:.2f}",
        }
        if row.get("eval_accuracy") is not None:
            self.last_eval = row["eval_accuracy"]
        if self.last_eval is not None:
            post["acc"] = f"{self.last_eval:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def note_eval(self, accuracy: float) -> None:
        self.last_eval = accuracy
        if self.bar is not None:
            self.bar.write(f"eval accuracy {accuracy:.3f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
