"""Prompt log-probs of an OpenAI-compatible completions server (vLLM) as teacher tensors.

A request sends each rollout row as a list of token ids (never text, so no re-tokenisation)
with ``prompt_logprobs: k`` and ``max_tokens: 1``. vLLM answers, per row, a list with one entry
per prompt position: ``null`` at position 0, and at every later position t a JSON object
``{"<token id>": {"logprob": ..., "rank": ..., "decoded_token": ...}, ...}`` holding the token
at t (whatever its rank) and the k most likely tokens of the distribution at t - 1 that
predicted it. When the token at t is itself in the top k the object has k entries, else k + 1.
vLLM writes -inf as -9999.0. These are the raw (unwarped) log-probs, the same numbers the
in-process top-k path computes (tip_ray/teacher/scorer.py).
"""

from __future__ import annotations

import math

import torch

from tip_ray.errors import TipRayError


class ServerAnswerError(TipRayError):
    """The server's answer does not have the layout prompt log-probs must have."""


def completion_request(rows: list[list[int]], model: str, k: int) -> dict:
    """The JSON body scoring `rows` (token ids) in one /v1/completions request."""
    return {
        "model": model,
        "prompt": rows,
        "max_tokens": 1,  # prefill is the work; the one sampled token is thrown away
        "temperature": 0.0,
        "prompt_logprobs": k,
    }


def _entry_logprob(entry, where: str) -> float:
    try:
        value = float(entry["logprob"])
    except (TypeError, KeyError, ValueError):
        raise ServerAnswerError(f"{where}: expected {{'logprob': number, ...}}, got {entry!r}") from None
    if math.isnan(value) or value > 1e-4:
        raise ServerAnswerError(f"{where}: log-prob {value} is not a log-probability")
    return value


def position_topk(entries: dict, token: int, k: int, where: str) -> tuple[list[int], list[float], float]:
    """(top-k ids highest first, their log-probs, log-prob of `token`) of one position's object."""
    if not isinstance(entries, dict):
        raise ServerAnswerError(f"{where}: expected an object of token log-probs, got {type(entries).__name__}")
    try:
        parsed = {int(key): _entry_logprob(value, f"{where}, token {key}") for key, value in entries.items()}
    except ValueError:
        raise ServerAnswerError(f"{where}: keys must be token ids, got {list(entries)[:3]}") from None
    if token not in parsed:
        raise ServerAnswerError(f"{where}: the prompt token {token} is missing from the answer")
    if len(parsed) == k + 1:
        top = {tid: lp for tid, lp in parsed.items() if tid != token}
    elif len(parsed) == k:
        top = parsed
    else:
        raise ServerAnswerError(
            f"{where}: {len(parsed)} log-probs for prompt_logprobs={k} (expected {k} or {k + 1}); "
            f"is the server's --max-logprobs below {k}?"
        )
    # Highest first, the lower id first among equals: the in-process top-k order.
    order = sorted(top.items(), key=lambda item: (-item[1], item[0]))
    return [tid for tid, _ in order], [lp for _, lp in order], parsed[token]


def row_topk(
    prompt_logprobs: list, ids: list[int], positions: list[int], k: int, where: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """indices [n, k] int64, logprobs [n, k] float32 and sampled-token log-probs [n] at the
    response `positions` of one row, read from the server's prompt log-probs of `ids`."""
    if not isinstance(prompt_logprobs, list) or len(prompt_logprobs) != len(ids):
        got = len(prompt_logprobs) if isinstance(prompt_logprobs, list) else type(prompt_logprobs).__name__
        raise ServerAnswerError(f"{where}: prompt_logprobs holds {got} positions for {len(ids)} prompt tokens")
    indices, logprobs, sampled = [], [], []
    for t in positions:
        top_ids, top_lps, own = position_topk(prompt_logprobs[t], ids[t], k, f"{where}, position {t}")
        indices.append(top_ids)
        logprobs.append(top_lps)
        sampled.append(own)
    return (
        torch.tensor(indices, dtype=torch.int64).view(len(positions), k),
        torch.tensor(logprobs, dtype=torch.float32).view(len(positions), k),
        torch.tensor(sampled, dtype=torch.float32),
    )


def answer_choices(answer, rows: int, where: str) -> list[list]:
    """Each row's prompt_logprobs list, in request order (choices carry their index)."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != rows:
        got = len(choices) if isinstance(choices, list) else "no"
        raise ServerAnswerError(f"{where}: {got} choices for {rows} prompts")
    ordered = [None] * rows
    for choice in choices:
        index = choice.get("index") if isinstance(choice, dict) else None
        if not isinstance(index, int) or not 0 <= index < rows or ordered[index] is not None:
            raise ServerAnswerError(f"{where}: choice index {index!r} is missing, repeated or out of range")
        if choice.get("prompt_logprobs") is None:
            raise ServerAnswerError(
                f"{where}: choice {index} has no prompt_logprobs; the server must be vLLM's OpenAI "
                f"server (`vllm serve`), which accepts the prompt_logprobs parameter"
            )
        ordered[index] = choice["prompt_logprobs"]
    return ordered
