"""The run's per-step counters: skipped steps, bad inputs, empty responses, and the fault and data
counts every metrics row carries."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tip_ray.pipeline.step_row import StepCounters

if TYPE_CHECKING:
    from tip_ray.pipeline.session import RunSession

log = logging.getLogger("tip_ray")


def skip_reason(extra: dict[str, float]) -> str:
    if extra.get("nonfinite_inputs"):
        return "teacher signal or statistics"
    if extra.get("nonfinite_weights"):
        return "weights after the update (it was refused; the learning rate may be too large)"
    return "loss or gradient"


def count_step(session: RunSession, result, rollouts, step: int) -> StepCounters:
    """Update the run's counters with one step and return them for its metrics row."""
    training = session.training
    empty = sum(int((r.response_mask.sum(1) == 0).sum()) for r in rollouts)
    if result.skipped:
        training.skipped_steps += 1
        training.consecutive_bad_steps += 1
        log.warning("step %d skipped: non-finite %s (%d in a row)", step + 1, skip_reason(result.extra),
                    training.consecutive_bad_steps)
    else:
        training.consecutive_bad_steps = 0
    report = session.prepared.data_report
    return StepCounters(
        nonfinite_inputs=int(result.extra.get("nonfinite_inputs", 0)),
        nonfinite_weights=int(result.extra.get("nonfinite_weights", 0)),
        empty_responses=empty,
        skipped_steps=training.skipped_steps,
        actor_restarts=session.faults.actor_restarts,
        resumes=session.faults.resumes,
        batches_redone=session.faults.batches_redone,
        in_flight_relaunched=session.faults.in_flight_relaunched,
        data_rows_skipped=len(report.skipped_bad),
        prompts_truncated=report.truncated_overlong,
        prompts_dropped=report.dropped_overlong,
    )
