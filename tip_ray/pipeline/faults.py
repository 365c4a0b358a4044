"""What a run survives, and the errors it stops with when it cannot go on.

- The driver dies (kill -9, a lost node): a checkpoint is written every checkpoint.every_steps
  updates and at the end; `tip-ray run` on the same run folder continues from the newest complete
  one (`--resume` insists on one). Data order, step counter and LR schedule continue; the rows of
  metrics.jsonl after the checkpoint are dropped and their batches trained again, and the batches
  that were in flight when it was written are sampled again: both counts are logged and recorded.
- A rollout, teacher or selector actor dies: Ray restarts it (train.max_actor_restarts) and
  retries its call. Every stage call carries the weight version it must use (see tip_ray.weights),
  so a restarted actor catches up by itself and a retried call is redone with the same weights and
  the same seed: the batch is neither lost nor trained twice. Each actor reports an incarnation id
  after its calls, so the run counts the restart and goes on.
- A learner rank dies (or an actor runs out of restarts): StageDied, naming the stage, at once. A
  stage that does not answer within train.stage_timeout_s: StageTimeout, naming it too. Either
  ends the step; every actor is stopped and the run resumes from its last checkpoint by itself, up
  to train.max_resumes times (pipeline.supervisor), then stops with RunFailed.
- Bad numbers: a step with NaN/inf in its teacher signal, loss or gradient, or whose update would
  make a weight NaN/inf, is skipped and counted; train.max_consecutive_bad_steps in a row stop it
  with TooManyBadSteps.
- SIGTERM (preemption): the step finishes, a checkpoint is written if it fits (pipeline.signals).
- A checkpoint on a full disk stops the run, the last good one kept (checkpoint.space).
"""

from __future__ import annotations

from tip_ray.errors import TipRayError


class StageTimeout(TipRayError, RuntimeError):
    """A stage did not answer within train.stage_timeout_s."""


class StageDied(TipRayError, RuntimeError):
    """A stage's actor died and Ray will not restart it (a learner rank, or out of restarts)."""

    _fields = ("stage",)

    @classmethod
    def of(cls, stage: str, cause: BaseException) -> "StageDied":
        return cls(f"stage {stage!r} died: {cause}", stage=stage)


class StageStartFailed(TipRayError, RuntimeError):
    """A stage's actor raised in its constructor (a bad setting, a teacher service that is not
    there): the same settings would raise again, so the run stops instead of resuming."""

    _fields = ("stage",)

    @classmethod
    def of(cls, stage: str, cause: BaseException) -> "StageStartFailed":
        return cls(f"stage {stage!r} could not start: {raised_message(str(cause))}", stage=stage)


def raised_message(ray_error: str) -> str:
    """What the actor's constructor raised ("Type: message"), from the text Ray gives for a failed
    creation task (its traceback's last frame, then the error); the whole text when it has no frames."""
    lines = ray_error.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith(" ")]
    tail = lines[frames[-1] + 1:] if frames else []
    return "\n".join(tail).strip() or ray_error.strip()


class PolicyLagExceeded(TipRayError, RuntimeError):
    """A batch arrived with weights older than max_policy_lag allows (never silently accepted)."""


class TooManyBadSteps(TipRayError, RuntimeError):
    """train.max_consecutive_bad_steps updates in a row were skipped for non-finite numbers."""


class RunFailed(TipRayError, RuntimeError):
    """A stage died or hung more often than train.max_resumes lets the run resume by itself."""
