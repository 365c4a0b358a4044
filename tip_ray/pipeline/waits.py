"""Waiting on stage calls with the stage's name in every error: a call that takes longer than
train.stage_timeout_s raises StageTimeout, an actor that died for good StageDied, and one whose
constructor raised StageStartFailed (not resumed: it would raise again)."""

from __future__ import annotations

import time

import ray

from tip_ray.pipeline.faults import StageDied, StageStartFailed, StageTimeout


def _timeout_error(stage: str, timeout_s: float) -> StageTimeout:
    return StageTimeout(
        f"stage {stage!r} did not answer within train.stage_timeout_s={timeout_s:g}s; "
        f"it may be hung (see the actor's log) or need a larger timeout"
    )


def wait_stage(refs, stage: str, timeout_s: float):
    """ray.get with the stage's name in the error when it takes longer than the timeout or its
    actor died for good."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise _timeout_error(stage, timeout_s) from None
    except ray.exceptions.RayActorError as exc:
        if getattr(exc, "actor_init_failed", False):
            raise StageStartFailed.of(stage, exc) from exc
        raise StageDied.of(stage, exc) from exc


def wait_all(refs: list, stage: str, timeout_s: float) -> list:
    """Like wait_stage over a group that works together (the learner ranks), but fails as soon as
    one member fails: the others may be blocked in a collective waiting for the dead one."""
    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timeout_error(stage, timeout_s)
        ready, pending = ray.wait(pending, num_returns=1, timeout=left, fetch_local=False)
        for ref in ready:
            wait_stage(ref, stage, max(deadline - time.monotonic(), 1.0))  # raises its error now
    return wait_stage(list(refs), stage, timeout_s)


def wait_ready_refs(refs, stage: str, timeout_s: float) -> None:
    """Wait until `refs` are computed without fetching them here (raises the stage's error)."""
    # A failed stage call surfaces later, through the selector call that depends on it.
    _, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s, fetch_local=False)
    if pending:
        raise _timeout_error(stage, timeout_s)
