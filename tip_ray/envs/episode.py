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

    def metrics(self) -> dict[str, float]:
        """Step metrics under ``env/``: sums over the batch, means per trajectory, shares of tokens."""
        eps: Sequence[Episode] = self.episodes
        n = max(len(eps), 1)
        model = sum(e.model_tokens for e in eps)
        total = model + sum(e.environment_tokens for e in eps)
        out = {
            "env/trajectories": float(len(eps)),
            "env/turns_mean": sum(e.turns for e in eps) / n,
            "env/turns_max": float(max((e.turns for e in eps), default=0)),
            "env/tool_calls": float(sum(e.tool_calls for e in eps)),
            "env/tool_errors": float(sum(e.tool_errors for e in eps)),
            "env/tool_timeouts": float(sum(e.tool_timeouts for e in eps)),
            "env/tool_outputs_cut": float(sum(e.outputs_cut for e in eps)),
            "env/model_token_share": model / total if total else 1.0,
            "env/generation_s": self.generation_seconds,
            "env/tool_s": self.tool_seconds,
        }
        for reason in STOP_REASONS:
            out[f"env/stop_{reason}"] = float(sum(e.stop == reason for e in eps))
        return out
