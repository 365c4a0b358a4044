"""eval: held-out evaluation inside a run. This module imports neither torch nor ray."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tip_ray.config.base import Strict


class EvalConfig(Strict):
    every_steps: int = Field(default=0, ge=0, description="0 = no evaluation inside the run.")
    at_start: bool = Field(default=False, description="Evaluate before the first update.")
    benchmark: Literal["demo", "prices", "math500", "aime24", "aime25"] = Field(
        default="demo",
        description="Which benchmark: a built-in task (demo: arithmetic; prices: the tool task) or a math benchmark.",
    )
    path: str | None = Field(
        default=None, description="Local JSONL file (or folder holding it) of a math benchmark."
    )
    hf_dataset: str | None = Field(
        default=None, description="Hugging Face dataset name instead of path ('default': the usual one)."
    )
    grade_timeout_s: float = Field(default=5.0, gt=0.0, description="Per-answer grading limit.")
    num_problems: int | None = Field(default=None, gt=0, description="Evaluate on the first N.")
    samples_per_problem: int = Field(default=1, gt=0, description="n of mean@n / pass@k.")
    temperature: float = Field(default=0.0, ge=0.0, description="Sampling temperature; 0 = greedy.")
    max_new_tokens: int = Field(default=256, gt=0, description="Longest answer generated per problem.")
