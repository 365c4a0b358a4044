"""checkpoint.on_sigterm: what a run does when it is told to stop (SIGTERM: a Kubernetes pod
deleted or preempted, `ray job stop`, `kill`)."""

from __future__ import annotations

from pydantic import Field

from tip_ray.config.base import Strict


class SigtermCheckpoint(Strict):
    """On SIGTERM the run finishes the step it is in, writes a checkpoint if one fits in the grace
    period, and stops (exit code 143); the same command then continues from that checkpoint."""

    enabled: bool = Field(
        default=True,
        description="Write a checkpoint before stopping on SIGTERM when one fits in grace_s "
        "(without it the run stops at once and continues from its last regular checkpoint).",
    )
    grace_s: float = Field(
        default=30.0,
        gt=0.0,
        le=86400.0,
        description="Seconds between SIGTERM and the SIGKILL that follows (Kubernetes' "
        "terminationGracePeriodSeconds, 30 by default): a checkpoint is written only if the "
        "slowest one measured so far fits in what is left of it.",
    )
