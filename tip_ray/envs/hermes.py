"""The Hermes tool-call format: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.

A model turn may hold several calls. Whatever cannot be read as a call (bad JSON, no name,
arguments that are not an object, an unclosed tag) becomes a `ToolCall` with an ``error``: the
model is told what was wrong, the run goes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(re.escape(OPEN) + r"(.*?)(" + re.escape(CLOSE) + r"|$)", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One call as the model wrote it; ``error`` is set when it could not be read."""

    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _read_call(body: str, closed: bool) -> ToolCall:
    if not closed:
        return ToolCall(error=f"malformed tool call: {OPEN} without {CLOSE}")
    try:
        value = json.loads(body)
    except json.JSONDecodeError as error:
        return ToolCall(error=f"malformed tool call: invalid JSON ({error.msg} at character {error.pos})")
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return ToolCall(error='malformed tool call: expected {"name": "<tool>", "arguments": {...}}')
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    if not isinstance(arguments, dict):
        return ToolCall(name=value["name"], error="malformed tool call: \"arguments\" must be a JSON object")
    return ToolCall(name=value["name"], arguments=arguments)


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every call in a model turn, in order; an empty list means the model answered."""
    return [_read_call(match.group(1).strip(), bool(match.group(2))) for match in _CALL.finditer(text)]
