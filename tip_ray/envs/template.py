"""Environment tokens from the chat template, without re-tokenising the conversation.

The model's own tokens are kept as sampled. What follows a model turn (the template's glue
after the end-of-turn token, the tool messages, the next assistant header) is rendered by
applying the template to a fixed two-message conversation with and without the new tool
messages and keeping the difference: only that delta is tokenised.
"""

from __future__ import annotations

from typing import Any

from tip_ray.envs.base import Environment, EnvironmentConfigError

_USER = {"role": "user", "content": "?"}
# The fixed model turn the delta is rendered after. Thinking templates (Qwen3's) render the last
# assistant turn with an empty <think></think> block added but an earlier one without it, unless
# the turn has reasoning of its own: a turn that carries a reasoning block renders the same both
# ways, as the model's own thinking turns do.
_ASSISTANT_TURNS = ("?", "<think>\n?\n</think>\n\n?")
CUT_MARKER = " [cut]"


class ChatTemplateError(EnvironmentConfigError):
    """The tokenizer's chat template cannot render tool messages as a delta."""


class ToolMessageRenderer:
    """Token ids of the environment's part of a turn, and the tool-output limit in tokens."""

    def __init__(self, tokenizer, max_tool_response_tokens: int):
        if not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(
                "rollout.environment: tool calling needs a tokenizer with a chat template that has a 'tool' role; "
                "this tokenizer has no chat template"
            )
        self.tokenizer = tokenizer
        self.max_tool_response_tokens = max_tool_response_tokens
        end = tokenizer.convert_ids_to_tokens(tokenizer.eos_token_id)
        probe = "tool-answer-probe"
        for turn in _ASSISTANT_TURNS:
            self._messages = [_USER, {"role": "assistant", "content": turn}]
            base = self._render(self._messages, generation_prompt=False)
            at = base.rfind(end)
            if at < 0:
                raise ChatTemplateError(
                    f"rollout.environment: the chat template does not end an assistant turn with the end token "
                    f"{end!r}, so the end of a model turn cannot be found; use a template that closes assistant "
                    "turns with it"
                )
            self._base = base
            self._glue = base[at + len(end):]  # after the model's end token, before the next message
            if self._renders_as_prefix([probe]):
                break
        if probe not in self._delta_text([probe]):
            raise ChatTemplateError(
                "rollout.environment: the chat template drops messages of the 'tool' role, so the model would "
                "never see a tool's answer; use a template that renders tool messages"
            )

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def delta_ids(self, tool_texts: list[str]) -> list[int]:
        """Tokens that follow a model turn ending in its end token: the tool messages, then the
        header of the next assistant turn."""
        return list(self.tokenizer(self._delta_text(tool_texts), add_special_tokens=False)["input_ids"])

    def _renders_as_prefix(self, tool_texts: list[str]) -> bool:
        return self._render_with(tool_texts).startswith(self._base)

    def _render_with(self, tool_texts: list[str]) -> str:
        messages = self._messages + [{"role": "tool", "content": text} for text in tool_texts]
        return self._render(messages, generation_prompt=True)

    def _delta_text(self, tool_texts: list[str]) -> str:
        full = self._render_with(tool_texts)
        if not full.startswith(self._base):
            raise ChatTemplateError(
                "rollout.environment: the chat template renders earlier messages differently once a tool message "
                "follows, so tool messages cannot be appended as a delta; use a template whose rendering of a "
                "conversation is a prefix of its rendering with more messages"
            )
        return self._glue + full[len(self._base):]

    def cut(self, text: str) -> tuple[str, bool]:
        """`text` within max_tool_response_tokens tokens (then a short marker), and whether it was cut."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_tool_response_tokens:
            return text, False
        return self.tokenizer.decode(ids[: self.max_tool_response_tokens]) + CUT_MARKER, True


def prompt_tools(environment_config: Any, environment: Environment | None = None) -> list[dict] | None:
    """The tool schemas a prompt's chat template is given (``apply_chat_template(tools=...)``),
    or None: for single-turn rollouts, with ``tools_in_prompt: false``, or when the environment
    has no schemas. ``environment`` is the already loaded one; else it is loaded by name."""
    if environment_config is None or environment_config.type == "single_turn":
        return None
    if not environment_config.tools_in_prompt:
        return None
    if environment is None:
        from tip_ray.envs.registry import load_environment

        environment = load_environment(environment_config.name)
    return [dict(schema) for schema in environment.schemas] or None
