"""The run's per-step counters: skipped steps, bad inputs, empty responses, and the fault and data
counts every metrics row carries."""

from __future__ import annotations

import logging

from tip_ray.checkpoint import FaultCounters, TrainingCounters
from tip_ray.data.prompts import ReadReport
from tip_ray.pipeline.step_row import StepCounters

log = logging.getLogger("tip_ray")


def skip_reason(extra: dict[str, float]) -> str:
    if extra.get("nonfinite_inputs"):
        return "teacher signal or statistics"
    if extra.get("nonfinite_weights"):
        return "weights after the update (it was refused; the learning rate may be too large)"
    return "loss or gradient"


def count_step(training: TrainingCounters, faults: FaultCounters, report: ReadReport, result, rollouts,
               step: int) -> StepCounters:
    """Update the run's counters with one step and return them for its metrics row."""
    empty = sum(int((r.response_mask.sum(1) == 0).sum()) for r in rollouts)
    if result.skipped:
        training.skipped_steps += 1
        training.consecutive_bad_steps += 1
        log.warning("step %d skipped: non-finite %s (%d in a row)", step + 1, skip_reason(result.extra),
                    training.consecutive_bad_steps)
    else:
        training.consecutive_bad_steps = 0
    return StepCounters(
        nonfinite_inputs=int(result.extra.get("nonfinite_inputs", 0)),
        nonfinite_weights=int(result.extra.get("nonfinite_weights", 0)),
        empty_responses=empty,
        skipped_steps=training.skipped_steps,
        actor_restarts=faults.actor_restarts,
        resumes=faults.resumes,
        batches_redone=faults.batches_redone,
        in_flight_relaunched=faults.in_flight_relaunched,
        data_rows_skipped=len(report.skipped_bad),
        prompts_truncated=report.truncated_overlong,
        prompts_dropped=report.dropped_overlong,
    )
