"""Run tool calls concurrently, each under a time limit, and turn every outcome into text.

Each call runs in its own daemon thread: calls of different trajectories overlap, and a tool
that hangs is abandoned at its deadline (Python cannot kill a thread; a daemon thread at least
never keeps the process alive). Exceptions, unknown tools and malformed calls become error texts
the model reads in its next turn.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from tip_ray.envs.base import Tool
from tip_ray.envs.hermes import ToolCall

STATUSES = ("ok", "error", "timeout")


@dataclass(frozen=True)
class ToolOutcome:
    """What the model will read for one call, and how the call went."""

    text: str
    status: str  # one of STATUSES; a malformed call or an unknown tool is an "error"
    cut: bool  # the text was cut to the token limit
    seconds: float  # time the tool ran (the limit, for a timeout; 0 when it never ran)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def run_tool_calls(
    calls: Sequence[ToolCall],
    tools: Mapping[str, Tool],
    *,
    timeout_s: float,
    cut: Callable[[str], tuple[str, bool]],
) -> list[ToolOutcome]:
    """Outcomes in the order of `calls`; all calls start at once and share one deadline each.

    `cut(text)` returns the text within the response limit and whether it had to be cut.
    """
    results: list[tuple[str, str, float] | None] = [None] * len(calls)
    threads: list[threading.Thread | None] = []
    start = time.perf_counter()

    def invoke(index: int, tool: Tool, arguments: dict) -> None:
        began = time.perf_counter()
        try:
            value = ("ok", _as_text(tool(**arguments)))
        except Exception as error:  # any tool failure is something the model should read
            value = ("error", f"error: tool raised {type(error).__name__}: {error}")
        results[index] = (*value, time.perf_counter() - began)

    for index, call in enumerate(calls):
        if call.error is not None:
            results[index] = ("error", f"error: {call.error}", 0.0)
            threads.append(None)
        elif call.name not in tools:
            known = ", ".join(sorted(tools)) or "none"
            results[index] = ("error", f"error: unknown tool {call.name!r}; available tools: {known}", 0.0)
            threads.append(None)
        else:
            thread = threading.Thread(target=invoke, args=(index, tools[call.name], call.arguments),
                                      name=f"tool-{call.name}", daemon=True)
            thread.start()
            threads.append(thread)
    outcomes = []
    for index, (call, thread) in enumerate(zip(calls, threads)):
        if thread is not None:
            thread.join(max(0.0, start + timeout_s - time.perf_counter()))
        result = results[index]
        if result is None:  # still running at its deadline
            result = ("timeout", f"error: tool {call.name!r} did not answer within {timeout_s:g} s", timeout_s)
        status, raw, seconds = result
        text, was_cut = cut(raw)
        outcomes.append(ToolOutcome(text=text, status=status, cut=was_cut, seconds=seconds))
    return outcomes
