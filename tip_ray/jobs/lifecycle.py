"""Following a job to its end: waiting for a final state and turning it into an exit code."""

from __future__ import annotations

import time
from collections.abc import Callable

from tip_ray.jobs.client import JobsClient
from tip_ray.jobs.errors import EXIT_FAILED, EXIT_STOPPED, EXIT_SUCCEEDED, JobsError

POLL_SECONDS = 0.5
SETTLE_SECONDS = 30.0
"""How long to wait for the final state once the log stream has closed (it closes as the job
ends, and the state can trail it by a moment)."""


def is_final(status) -> bool:
    return status.is_terminal()


def exit_code(status) -> int:
    """0 for SUCCEEDED, 3 for STOPPED, 1 for FAILED (and anything else final)."""
    from ray.job_submission import JobStatus

    if status == JobStatus.SUCCEEDED:
        return EXIT_SUCCEEDED
    if status == JobStatus.STOPPED:
        return EXIT_STOPPED
    return EXIT_FAILED


def wait_until_final(client: JobsClient, job_id: str, timeout_s: float, poll_s: float = POLL_SECONDS):
    """Poll until the job is SUCCEEDED, FAILED or STOPPED; JobsError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.status(job_id)
        if is_final(status):
            return status
        if time.monotonic() >= deadline:
            raise JobsError(f"job {job_id} is still {status.value} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def follow(client: JobsClient, job_id: str, write: Callable[[str], None]):
    """Stream the job's output through `write` until it ends; return its final status."""
    client.tail(job_id, write)
    return wait_until_final(client, job_id, SETTLE_SECONDS)
