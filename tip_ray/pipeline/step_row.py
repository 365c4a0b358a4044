"""One step's metrics row as a typed record. `StepRow.to_row()` is the JSON line written to
metrics.jsonl (and given to trackers and `on_step`); the column names of the quadrant statistics
are spelled once, by `quadrant_column`, for the run that writes them and the report and sweep
that read them back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from tip_ray.tip.taxonomy import QUADRANT_STATS, QUADRANTS, quadrant_key

QUADRANT_TOKENS_COLUMN = "quadrant_tokens"


def quadrant_column(stat: str, quadrant: int) -> str:
    """The metrics column of one quadrant statistic: quadrant_column("share", 3) is
    "quadrant_share_q3" (a statistic or quadrant that does not exist is a KeyError)."""
    return "quadrant_" + quadrant_key(stat, quadrant)


def teacher_column(name: str, stat: str) -> str:
    """The metrics column of one teacher's statistic: "teacher/<name>/selected_fraction"."""
    return f"teacher/{name}/{stat}"


def teacher_columns(per_teacher: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """SelectionSummary.per_teacher as metrics columns ({} for a run of one teacher)."""
    return {teacher_column(name, stat): value for name, stats in per_teacher.items() for stat, value in stats.items()}


@dataclass(frozen=True)
class QuadrantStats:
    """The selector's per-quadrant statistics of one batch (tip.taxonomy.quadrant_summary)."""

    tokens: float  # valid response positions
    share: tuple[float, ...]  # per quadrant 1..4: fraction of the valid positions
    mean_entropy: tuple[float, ...]
    mean_divergence: tuple[float, ...]

    @classmethod
    def from_summary(cls, quadrants: Mapping[str, float]) -> "QuadrantStats":
        """From SelectionSummary.quadrants; a missing statistic is an error naming its key."""
        def column(stat: str) -> tuple[float, ...]:
            return tuple(float(quadrants[quadrant_key(stat, q)]) for q in QUADRANTS)

        return cls(tokens=float(quadrants["tokens"]), share=column("share"),
                   mean_entropy=column("mean_entropy"), mean_divergence=column("mean_divergence"))

    def columns(self) -> dict[str, float]:
        row = {QUADRANT_TOKENS_COLUMN: self.tokens}
        for i, q in enumerate(QUADRANTS):
            for stat in QUADRANT_STATS:
                row[quadrant_column(stat, q)] = getattr(self, stat)[i]
        return row


@dataclass(frozen=True)
class StepCounters:
    """Counts up to and including the step (the fault and data counts are the run's totals)."""

    nonfinite_inputs: int  # this step: non-finite teacher signals or statistics
    nonfinite_weights: int  # this step: non-finite weights the update would have made
    empty_responses: int  # this step: rollouts with no response token
    skipped_steps: int
    actor_restarts: int
    resumes: int
    batches_redone: int
    in_flight_relaunched: int
    data_rows_skipped: int
    prompts_truncated: int
    prompts_dropped: int


@dataclass(frozen=True)
class StepRow:
    """Everything metrics.jsonl records about one update, in its column order."""

    step: int
    batch_id: int
    loss: float
    grad_norm: float
    lr: float
    skipped: bool
    selected_tokens: int
    response_tokens: int
    selected_fraction: float
    mean_entropy: float
    mean_reverse_kl: float
    teacher_signal: str
    teacher_signal_exact: bool
    stats_approximate: bool
    policy_lag: int  # versions the batch's weights lagged the learner by when it was consumed
    selector_lag: int
    rollout_tokens_per_s: float
    teacher_tokens_per_s: float
    selector_tokens_per_s: float
    learner_tokens_per_s: float
    tokens_per_s: float
    queue_in_flight: int  # batches launched and not yet trained on, after this step's launch
    learner_peak_mib: float
    step_seconds: float
    learner_seconds: float
    train_accuracy: float | None
    quadrants: QuadrantStats
    prompt_rows: tuple[int, ...]
    weight_sync: str  # "broadcast" or "object_store"
    weight_sync_seconds: float
    counters: StepCounters
    environment: Mapping[str, float] = field(default_factory=dict)  # env/ columns of multi-turn steps
    teachers: Mapping[str, float] = field(default_factory=dict)  # teacher/<name>/ columns (several teachers)
    evaluated: bool = False  # the eval_accuracy column is written only after an evaluation
    eval_accuracy: float | None = None  # None: the evaluation timed out

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for column in fields(self):
            value = getattr(self, column.name)
            if column.name == "quadrants":
                row.update(value.columns())
            elif column.name == "counters":
                row.update(asdict(value))
            elif column.name in ("environment", "teachers"):
                row.update(value)
            elif column.name == "prompt_rows":
                row[column.name] = list(value)
            elif column.name not in ("evaluated", "eval_accuracy"):
                row[column.name] = value
        if self.evaluated:
            row["eval_accuracy"] = self.eval_accuracy
        return row
