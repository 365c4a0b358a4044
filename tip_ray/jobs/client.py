"""A small handle on one cluster's Ray Jobs API: authenticated, with errors that say what to do.

It wraps `ray.job_submission.JobSubmissionClient`; every call goes through `_translated`, which
turns Ray's authentication errors (HTTP 401/403), unreachable dashboards and unknown job ids
into `JobsError`s naming the address, the token source and the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from tip_ray.jobs.auth import ClusterToken, explain_rejection, find_token
from tip_ray.jobs.errors import JobsAuthError, JobsError

ADDRESS_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
"""Environment variables that may name the dashboard when --address is not given (Ray's order)."""

_STATUS_IN_RAY_ERROR = re.compile(r"status code (\d{3})")

# Ray's client modules log each packaging step and file skipped at INFO, and warn that .venv is
# skipped (it is excluded anyway); the commands print their own one-line account instead.
_CHATTY_RAY_LOGGERS = {
    "ray._private.runtime_env.packaging": logging.WARNING,
    "ray._private.runtime_env.working_dir": logging.ERROR,
    "ray.dashboard.modules.dashboard_sdk": logging.WARNING,
    "ray.dashboard.modules.job.sdk": logging.WARNING,
}


def resolve_address(address: str | None) -> str:
    """The dashboard URL to talk to: `address`, else the first http(s) URL in `ADDRESS_VARS`."""
    if address:
        scheme = address.split("://", 1)[0] if "://" in address else ""
        if scheme not in ("", "http", "https"):
            raise JobsError(
                f"--address {address}: the Jobs API is the Ray dashboard's http(s) URL, e.g. "
                f"http://HOST:8265 ({scheme}:// is not a scheme it speaks)"
            )
        return address.rstrip("/")
    for var in ADDRESS_VARS:
        value = os.environ.get(var, "").strip()
        if value.startswith(("http://", "https://")):
            return value.rstrip("/")
    raise JobsError(
        "no cluster address: pass --address http://HOST:8265 (the Ray dashboard, e.g. through "
        "kubectl port-forward svc/CLUSTER-head-svc 8265:8265) or set RAY_API_SERVER_ADDRESS"
    )


def _rejection(exc: Exception) -> tuple[int, str]:
    """(HTTP status, server text) of a Ray AuthenticationError, whose message starts with
    'Authentication required: <body>' (401) or 'Authentication failed: <body>' (403)."""
    text = getattr(exc, "message", None) or str(exc)
    status = 401 if text.startswith("Authentication required") else 403
    body = text.split(":", 1)[1] if ":" in text else ""
    return status, body.split("\n\n", 1)[0].strip()


class JobsClient:
    """The Jobs API of the cluster at `address`, authenticated with `token` (None: no token)."""

    def __init__(self, address: str, token: ClusterToken | None):
        self.address = address
        self.token = token
        from ray.job_submission import JobSubmissionClient

        headers = token.headers() if token is not None else None
        for name, level in _CHATTY_RAY_LOGGERS.items():
            logging.getLogger(name).setLevel(level)
        with self._translated():
            # The constructor already makes a request (the version check), so auth fails here.
            self._sdk = JobSubmissionClient(address, headers=headers)

    @classmethod
    def connect(cls, address: str | None, token_file: str | None = None) -> "JobsClient":
        """Find the address and the token (see tip_ray.jobs.auth) and open the client."""
        return cls(resolve_address(address), find_token(token_file))

    @contextlib.contextmanager
    def _translated(self, job_id: str | None = None) -> Iterator[None]:
        import aiohttp
        import requests
        from ray.exceptions import AuthenticationError

        try:
            yield
        except AuthenticationError as exc:
            status, body = _rejection(exc)
            raise JobsAuthError(explain_rejection(status, self.address, self.token, body)) from None
        except aiohttp.WSServerHandshakeError as exc:  # the log stream's websocket
            if exc.status in (401, 403):
                raise JobsAuthError(explain_rejection(exc.status, self.address, self.token, exc.message)) from None
            if exc.status == 404 and job_id:
                raise self._unknown_job(job_id) from None
            raise JobsError(f"log stream from {self.address} refused: HTTP {exc.status} {exc.message}") from None
        except (ConnectionError, requests.exceptions.ConnectionError, aiohttp.ClientConnectionError) as exc:
            raise JobsError(
                f"cannot reach the Ray dashboard at {self.address} ({exc}); check that the cluster "
                "is up, that the address is the dashboard's (port 8265 by default, not the GCS "
                "port 6379), and that any kubectl port-forward is still running"
            ) from None
        except JobsError:
            raise
        except RuntimeError as exc:
            match = _STATUS_IN_RAY_ERROR.search(str(exc))
            if match and match.group(1) == "404" and job_id:
                raise self._unknown_job(job_id) from None
            raise JobsError(f"the Ray cluster at {self.address} answered: {exc}") from None

    def _unknown_job(self, job_id: str) -> JobsError:
        return JobsError(
            f"no job {job_id!r} on the cluster at {self.address}; `ray job list --address "
            f"{self.address}` lists the jobs it knows"
        )

    # ------------------------------------------------------------------ the calls

    def submit(self, *, entrypoint: str, runtime_env: dict[str, Any], submission_id: str,
               metadata: dict[str, str]) -> str:
        with self._translated():
            return self._sdk.submit_job(
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                submission_id=submission_id,
                metadata=metadata,
            )

    def info(self, job_id: str):
        """Ray's JobDetails: status, message, entrypoint, start/end times (ms), metadata."""
        with self._translated(job_id):
            return self._sdk.get_job_info(job_id)

    def status(self, job_id: str):
        with self._translated(job_id):
            return self._sdk.get_job_status(job_id)

    def logs(self, job_id: str) -> str:
        with self._translated(job_id):
            return self._sdk.get_job_logs(job_id)

    def stop(self, job_id: str) -> bool:
        """Ask the job to stop; False when it was not running any more."""
        with self._translated(job_id):
            return self._sdk.stop_job(job_id)

    def tail(self, job_id: str, write: Callable[[str], None]) -> None:
        """Pass each chunk of the job's output to `write` as it comes, until the job ends."""

        async def pump() -> None:
            async for chunk in self._sdk.tail_job_logs(job_id):
                write(chunk)

        with self._translated(job_id):
            try:
                asyncio.run(pump())
            except RuntimeError as exc:
                if "closed unexpectedly" in str(exc) or "WebSocket error" in str(exc):
                    raise JobsError(
                        f"the log stream of {job_id} broke ({exc}); the job itself is not "
                        f"affected: follow it again with `tip-ray logs {job_id} --follow`"
                    ) from None
                raise
