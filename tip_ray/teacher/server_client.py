"""JSON over HTTP to an OpenAI-compatible server, with bounded retries (standard library only).

Connection errors, timeouts and 5xx answers are retried with doubling waits; a 4xx answer is
the caller's mistake and fails at once with the server's own message.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tip_ray.errors import TipRayError


class TeacherServerError(TipRayError):
    """The teacher server cannot be reached or refused a request; `status` is the HTTP code, if any."""

    _fields = ("url", "status")


@dataclass(frozen=True)
class ServerEndpoint:
    url: str  # base, without /v1
    api_key_env: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 0.5

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise TeacherServerError(
                    f"teacher.backend.api_key_env names {self.api_key_env!r}, which is not set in the "
                    f"environment of the teacher scorer: export it before the run", url=self.url)
            headers["Authorization"] = f"Bearer {key}"
        return headers


def _server_message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500]
    error = doc.get("error", doc) if isinstance(doc, dict) else doc
    message = error.get("message", error) if isinstance(error, dict) else error
    return str(message)[:500]


def call(endpoint: ServerEndpoint, path: str, body: dict | None = None):
    """The decoded JSON answer of GET (body None) or POST `path`; TeacherServerError otherwise."""
    url = endpoint.url + path
    data = None if body is None else json.dumps(body).encode()
    last = ""
    for attempt in range(endpoint.max_retries + 1):
        if attempt:
            time.sleep(endpoint.backoff_s * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=data, headers=endpoint.headers(),
                                         method="GET" if data is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=endpoint.timeout_s) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            message = _server_message(exc.read())
            if exc.code < 500:
                raise TeacherServerError(
                    f"teacher server {url} refused the request (HTTP {exc.code}): {message}",
                    url=url, status=exc.code) from None
            last = f"HTTP {exc.code}: {message}"
            continue
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, reset, cut short
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            continue
        try:
            return json.loads(raw)
        except ValueError:
            raise TeacherServerError(f"teacher server {url} answered something that is not JSON: "
                                     f"{raw[:200]!r}", url=url) from None
    raise TeacherServerError(
        f"teacher server {url} did not answer after {endpoint.max_retries + 1} attempts ({last}); "
        f"check that `vllm serve` runs there and that teacher.backend.url is right",
        url=url, status=None)
