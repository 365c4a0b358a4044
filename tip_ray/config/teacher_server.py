"""Where an external teacher is served: an OpenAI-compatible `vllm serve` endpoint.

The server scores rollouts through prompt log-probs (the top-k signal form); vLLM refuses more
than its `--max-logprobs` (20 unless the server was started with more), so `max_logprobs` here
states the server's limit and `teacher.signal.k` is checked against it before anything starts.

    teacher:
      signal: {type: topk, k: 20}
      backend: {type: server, url: http://10.0.0.5:8000, model: teacher}
"""

from __future__ import annotations

from urllib.parse import urlsplit

from typing import Literal

from pydantic import Field, field_validator

from tip_ray.config.base import Strict


class ServerTeacher(Strict):
    """An OpenAI-compatible server (`vllm serve MODEL`) elsewhere that serves the teacher; top-k
    signal form only."""

    type: Literal["server"]
    url: str = Field(description="Base URL of the server, e.g. http://10.0.0.5:8000 (a trailing /v1 is allowed).")
    model: str | None = Field(
        default=None, description="Served model name (`vllm serve --served-model-name`); omit when the server serves one."
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the server's API key (`vllm serve --api-key`)."
    )
    timeout_s: float = Field(default=120.0, gt=0.0, description="Limit of one HTTP request.")
    max_logprobs: int = Field(
        default=20, gt=0, description="The server's --max-logprobs (vLLM's default is 20); teacher.signal.k may not exceed it."
    )
    max_retries: int = Field(
        default=5, ge=0, description="Retries of a request after a connection error or a 5xx answer."
    )
    backoff_s: float = Field(default=0.5, gt=0.0, description="First wait between retries; doubles each retry.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be http://HOST:PORT or https://HOST:PORT, got {value!r}")
        return base_url(value)


def base_url(url: str) -> str:
    """The server's root: the OpenAI routes live under /v1, vLLM's /tokenize beside it."""
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def check_server_limit(server: ServerTeacher, k: int | None) -> None:
    """teacher.signal.k fits the number of log-probs the server returns a position."""
    if k is not None and k > server.max_logprobs:
        raise ValueError(
            f"teacher.signal.k is {k} but the server returns at most teacher.backend.max_logprobs = "
            f"{server.max_logprobs} log-probs a position (vLLM's default is 20): lower teacher.signal.k "
            f"to {server.max_logprobs}, or start `vllm serve` with --max-logprobs {k} and set max_logprobs to it"
        )
