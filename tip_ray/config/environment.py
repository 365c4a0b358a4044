"""`rollout.environment`: what a rollout is, one response or a multi-turn tool-calling episode.

The YAML names a registered environment (built-in, or an installed package's
``tip_ray.environments`` entry point); it never names a module to import.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from tip_ray.config.base import Strict


class SingleTurnEnvironment(Strict):
    """One prompt, one sampled response: no tools (the default)."""

    type: Literal["single_turn"] = "single_turn"


class ToolEnvironmentConfig(Strict):
    """Multi-turn rollouts with tool calls in the Hermes format (docs/agentic.md).

    The model writes until a tool call or the end of its turn; the tools run; their answers come
    back through the chat template; repeat until the model answers without a call, max_turns,
    or max_total_tokens. Tool output and template tokens are never scored or trained on.
    """

    type: Literal["tools"]
    name: str = Field(
        description="A registered environment: a built-in ('calculator') or one that an installed package "
        "registers under the 'tip_ray.environments' entry-point group."
    )
    max_turns: int = Field(default=50, gt=0, description="Assistant turns per trajectory.")
    max_tool_response_tokens: int = Field(
        default=1024, gt=0, description="A tool's answer is cut to this many tokens (then marked as cut)."
    )
    tool_timeout_s: float = Field(
        default=30.0, gt=0.0, description="A tool call still running after this becomes an error message."
    )
    max_total_tokens: int = Field(
        default=4096, gt=0,
        description="Response tokens per trajectory, model-written and environment together (each turn "
        "is also limited by rollout.sampling.max_new_tokens).",
    )
    tools_in_prompt: bool = Field(
        default=True,
        description="Give the environment's tool schemas to the chat template when prompts are encoded "
        "(training and evaluation alike), as Qwen3/Hermes templates render them into the system prompt; "
        "false when the prompts describe the tools themselves. A template that ignores tools is unchanged.",
    )

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        from tip_ray.envs.registry import environment_names

        known = environment_names()
        if value not in known:
            raise ValueError(
                f"no environment {value!r}; known: {', '.join(known)}. A package registers one under the "
                "'tip_ray.environments' entry-point group"
            )
        if value == "single_turn":
            raise ValueError("'single_turn' has no tools: use `environment: {type: single_turn}` instead")
        return value


EnvironmentConfig = Annotated[Union[SingleTurnEnvironment, ToolEnvironmentConfig], Field(discriminator="type")]
