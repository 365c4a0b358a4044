"""Records of multi-turn rollouts: how each trajectory went, and the batch's environment metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

STOP_REASONS = ("answered", "turn_limit", "token_budget", "length")
"""answered: a turn without a tool call; turn_limit: max_turns reached with a call pending;
token_budget: max_total_tokens reached; length: a turn hit max_new_tokens before its end token."""


@dataclass(frozen=True)
class ToolLimits:
    max_turns: int  # assistant turns per trajectory
    max_tool_response_tokens: int  # a tool's text is cut to this many tokens
    tool_timeout_s: float  # a call still running after this is abandoned
    max_total_tokens: int  # response tokens per trajectory, model-written and environment together


@dataclass
class Episode:
    """One trajectory's counts (mutable while the driver runs it)."""

    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0  # exceptions, malformed calls, unknown tools
    tool_timeouts: int = 0
    outputs_cut: int = 0
    model_tokens: int = 0
    environment_tokens: int = 0
    stop: str = ""


@dataclass(frozen=True)
class EnvironmentReport:
    """A batch of trajectories: per-trajectory episodes and where the time went."""

    episodes: tuple[Episode, ...]
    generation_seconds: float
    tool_seconds: float  # wall time of the concurrent tool rounds
    final_texts: tuple[str, ...] = field(default=())
    # Prompt tokens sent to the backend over all turns, and those it found in its prefix cache
    # (backends that count them: vLLM; 0 otherwise).
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0

    def counts(self) -> dict[str, float]:
        """Raw sums over the batch; shards of one step add up (`environment_step_metrics`)."""
        eps: Sequence[Episode] = self.episodes
        counts = {
            "trajectories": float(len(eps)),
            "turns": float(sum(e.turns for e in eps)),
            "turns_max": float(max((e.turns for e in eps), default=0)),
            "tool_calls": float(sum(e.tool_calls for e in eps)),
            "tool_errors": float(sum(e.tool_errors for e in eps)),
            "tool_timeouts": float(sum(e.tool_timeouts for e in eps)),
            "tool_outputs_cut": float(sum(e.outputs_cut for e in eps)),
            "model_tokens": float(sum(e.model_tokens for e in eps)),
            "environment_tokens": float(sum(e.environment_tokens for e in eps)),
            "generation_s": self.generation_seconds,
            "tool_s": self.tool_seconds,
            "prompt_tokens": float(self.prompt_tokens),
            "cached_prompt_tokens": float(self.cached_prompt_tokens),
        }
        for reason in STOP_REASONS:
            counts[f"stop_{reason}"] = float(sum(e.stop == reason for e in eps))
        return counts

    def metrics(self) -> dict[str, float]:
        return environment_step_metrics([self.counts()])


_SUMMED = ("trajectories", "model_tokens", "environment_tokens", "tool_calls", "tool_errors", "tool_timeouts", "tool_outputs_cut") + tuple(
    f"stop_{reason}" for reason in STOP_REASONS
)


def environment_step_metrics(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """A step's ``env/`` metrics from the `counts` of its rollout shards; {} for single-turn runs.

    Counts add up; turns are a mean per trajectory; the model-written share is over all response
    tokens; the prefix-cached share is over all prompt tokens sent, turn by turn; times are the
    slowest shard's (shards run in parallel).
    """
    parts = [p for p in parts if p]
    if not parts:
        return {}
    total = {key: sum(p.get(key, 0.0) for p in parts) for key in parts[0]}
    trajectories = max(total["trajectories"], 1.0)
    tokens = total["model_tokens"] + total["environment_tokens"]
    out = {f"env/{key}": total[key] for key in _SUMMED}
    out.update({
        "env/turns_mean": total["turns"] / trajectories,
        "env/turns_max": max(p["turns_max"] for p in parts),
        "env/model_token_share": total["model_tokens"] / tokens if tokens else 1.0,
        "env/generation_s": max(p["generation_s"] for p in parts),
        "env/tool_s": max(p["tool_s"] for p in parts),
    })
    prompt_tokens = total.get("prompt_tokens", 0.0)
    if prompt_tokens:  # only backends that report their prefix cache
        out["env/prefix_cached_share"] = total.get("cached_prompt_tokens", 0.0) / prompt_tokens
    return out
