"""From `rollout.environment` to what a rollout worker runs: nothing extra, or a multi-turn driver."""

from __future__ import annotations

from tip_ray.envs.driver import MultiTurnDriver
from tip_ray.envs.episode import ToolLimits
from tip_ray.envs.registry import load_environment


def build_driver(environment, backend, tokenizer) -> MultiTurnDriver | None:
    """None for single-turn rollouts (the backend samples directly), else the tool-calling driver."""
    if environment is None or environment.type == "single_turn":
        return None
    limits = ToolLimits(
        max_turns=environment.max_turns,
        max_tool_response_tokens=environment.max_tool_response_tokens,
        tool_timeout_s=environment.tool_timeout_s,
        max_total_tokens=environment.max_total_tokens,
    )
    return MultiTurnDriver(backend, tokenizer, load_environment(environment.name), limits)
