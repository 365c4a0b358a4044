"""The multi-turn rollout: sample a turn, run its tool calls, append the tool messages, repeat.

Every trajectory keeps the exact ids the backend sampled, turn by turn, and the environment's
ids (rendered as a delta through the chat template) next to them, flagged as not model-written.
All trajectories of a batch advance together: one backend call per turn for the ones still
open, and their tool calls run concurrently.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Sequence

from tip_ray.envs.base import Environment
from tip_ray.envs.episode import Episode, EnvironmentReport, ToolLimits
from tip_ray.envs.hermes import ToolCall, parse_tool_calls
from tip_ray.envs.template import ToolMessageRenderer
from tip_ray.envs.tool_runner import run_tool_calls
from tip_ray.rollout.backend import RolloutBackend, Sample, SamplingRequest


@dataclass
class _Trajectory:
    prompt_index: int
    prompt: tuple[int, ...]
    ids: list[int] = field(default_factory=list)
    written: list[bool] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    episode: Episode = field(default_factory=Episode)
    last_text: str = ""
    pending: list[ToolCall] = field(default_factory=list)

    def append(self, ids: Sequence[int], logprobs: Sequence[float] | None) -> None:
        self.ids.extend(ids)
        self.written.extend([logprobs is not None] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))
        if logprobs is None:
            self.episode.environment_tokens += len(ids)
        else:
            self.episode.model_tokens += len(ids)


class MultiTurnDriver:
    def __init__(self, backend: RolloutBackend, tokenizer, environment: Environment, limits: ToolLimits):
        self.backend = backend
        self.tokenizer = tokenizer
        self.environment = environment
        self.limits = limits
        self.renderer = ToolMessageRenderer(tokenizer, limits.max_tool_response_tokens)
        self.eos_token_id = tokenizer.eos_token_id

    def generate(self, prompts: Sequence[Sequence[int]], request: SamplingRequest) -> tuple[list[Sample], EnvironmentReport]:
        """n trajectories per prompt, grouped by prompt like `RolloutBackend.generate`."""
        states = [_Trajectory(i, tuple(p)) for i, p in enumerate(prompts) for _ in range(request.n)]
        generation_s = tool_s = 0.0
        sent_before, cached_before = self._prompt_counts()
        for turn in range(self.limits.max_turns):
            active = [s for s in states if not s.episode.stop]
            if not active:
                break
            start = time.perf_counter()
            self._sample_turn(active, request, turn)
            generation_s += time.perf_counter() - start
            calling = [s for s in active if s.pending]
            if calling:
                start = time.perf_counter()
                self._answer_calls(calling)
                tool_s += time.perf_counter() - start
        samples = [
            Sample(prompt_index=s.prompt_index, response_ids=tuple(s.ids), logprobs=tuple(s.logprobs),
                   model_written=tuple(s.written))
            for s in states
        ]
        sent, cached = self._prompt_counts()
        report = EnvironmentReport(episodes=tuple(s.episode for s in states), generation_seconds=generation_s,
                                   tool_seconds=tool_s, final_texts=tuple(s.last_text for s in states),
                                   prompt_tokens=sent - sent_before, cached_prompt_tokens=cached - cached_before)
        return samples, report

    def _prompt_counts(self) -> tuple[int, int]:
        """The backend's running counts of prompt tokens sent and found in its prefix cache (vLLM)."""
        return int(getattr(self.backend, "prompt_tokens", 0)), int(getattr(self.backend, "cached_prompt_tokens", 0))

    def _sample_turn(self, active: list[_Trajectory], request: SamplingRequest, turn: int) -> None:
        limits = self.limits
        room = [limits.max_total_tokens - len(s.ids) for s in active]
        turn_request = dataclasses.replace(
            request, n=1, max_new_tokens=max(1, min(request.max_new_tokens, max(room))),
            seed=request.seed + 7919 * turn,  # each turn its own draw, reproducible per batch
        )
        samples = self.backend.generate([s.prompt + tuple(s.ids) for s in active], turn_request)
        for state, sample, left in zip(active, samples, room):
            ids, logprobs = list(sample.response_ids[:left]), list(sample.logprobs[:left])
            state.append(ids, logprobs)
            state.episode.turns += 1
            state.last_text = self.tokenizer.decode(ids, skip_special_tokens=True)
            calls = parse_tool_calls(state.last_text)
            ended = bool(ids) and ids[-1] == self.eos_token_id
            if len(state.ids) >= limits.max_total_tokens:
                state.episode.stop = "token_budget"
            elif not ended:
                state.episode.stop = "length"
            elif not calls:
                state.episode.stop = "answered"
            elif state.episode.turns >= limits.max_turns:
                state.episode.stop = "turn_limit"
            else:
                state.pending = calls

    def _answer_calls(self, calling: list[_Trajectory]) -> None:
        """Every pending call of every trajectory at once, then each trajectory's tool messages."""
        flat = [call for s in calling for call in s.pending]
        outcomes = iter(run_tool_calls(flat, self.environment.tools, timeout_s=self.limits.tool_timeout_s,
                                       cut=self.renderer.cut))
        for state in calling:
            mine = [next(outcomes) for _ in state.pending]
            state.pending = []
            episode = state.episode
            episode.tool_calls += len(mine)
            episode.tool_errors += sum(o.status == "error" for o in mine)
            episode.tool_timeouts += sum(o.status == "timeout" for o in mine)
            episode.outputs_cut += sum(o.cut for o in mine)
            delta = self.renderer.delta_ids([o.text for o in mine])
            if len(state.ids) + len(delta) >= self.limits.max_total_tokens:
                episode.stop = "token_budget"  # no room for the answer and another turn
            else:
                state.append(delta, None)
