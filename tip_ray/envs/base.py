"""What an environment is: the tools a model may call, by name, and how to describe them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tip_ray.errors import TipRayError

Tool = Callable[..., Any]
"""A plain Python callable; the model's JSON arguments arrive as keyword arguments."""


class EnvironmentConfigError(TipRayError, ValueError):
    """An environment or tool that cannot be used as given (unknown name, wrong type)."""


@dataclass(frozen=True)
class Environment:
    """A named set of tools; an environment without tools is single-turn.

    ``schemas`` are the tools' JSON descriptions (OpenAI function format) that a chat template
    renders into the system prompt; they are optional, the tools are what runs.
    """

    name: str
    tools: Mapping[str, Tool] = field(default_factory=dict)
    schemas: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for tool_name, tool in self.tools.items():
            if not isinstance(tool_name, str) or not tool_name:
                raise EnvironmentConfigError(
                    f"environment {self.name!r}: tool names must be non-empty strings, got {tool_name!r}"
                )
            if not callable(tool):
                raise EnvironmentConfigError(
                    f"environment {self.name!r}: tool {tool_name!r} is a {type(tool).__name__}, not a callable; "
                    "register a function that takes the call's arguments as keywords"
                )

    @property
    def multi_turn(self) -> bool:
        return bool(self.tools)
