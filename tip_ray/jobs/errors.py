"""Errors of the cluster-job commands, each carrying a message that says what to change."""

from __future__ import annotations

from tip_ray.errors import TipRayError


class JobsError(TipRayError, RuntimeError):
    """Talking to a Ray cluster's Jobs API failed (unreachable, unknown job, bad request)."""


class JobsAuthError(JobsError):
    """The cluster refused the request's token, or no usable token could be found locally."""


# Exit codes of submit --follow, logs --follow, stop and status --wait: the shell sees how the job ended.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_ERROR = 2  # the request itself failed: bad input, unreachable cluster, authentication
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130
