"""Where a step's time went, from its metrics row: each stage's seconds and what is left
(Ray calls, object transfers, waiting), as a plain dict."""

from __future__ import annotations

import math
from typing import Any

STAGES = ("rollout", "teacher", "selector", "learner", "weight_sync")


def _seconds(tokens: float, per_second: float | None) -> float:
    if not per_second or not math.isfinite(per_second) or per_second <= 0:
        return 0.0
    return tokens / per_second


def stage_seconds(row: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage of one step, plus ``step`` and ``overhead`` = step - the stages.

    At max_policy_lag 0 the stages of a step run one after another, so the overhead is what
    Ray and the driver add; with a lag the next rollout overlaps the learner and the overhead
    can be negative.
    """
    response = float(row["response_tokens"])
    out = {
        "rollout": _seconds(response, row.get("rollout_tokens_per_s")),
        "teacher": _seconds(response, row.get("teacher_tokens_per_s")),
        "selector": _seconds(response, row.get("selector_tokens_per_s")),
        "learner": float(row.get("learner_seconds") or 0.0),
        "weight_sync": float(row.get("weight_sync_seconds") or 0.0),
    }
    out["step"] = float(row["step_seconds"])
    out["overhead"] = out["step"] - sum(out[name] for name in STAGES)
    return out


def format_breakdown(seconds: dict[str, float]) -> str:
    step = seconds["step"] or math.nan
    parts = [f"{name} {seconds[name]:.1f} s ({seconds[name] / step:.0%})" for name in (*STAGES, "overhead")]
    return f"step {seconds['step']:.1f} s = " + ", ".join(parts)
