"""Thinking chat templates (Qwen3's): tool messages still render as a delta after a model turn.

Qwen3's template renders the last assistant turn with an empty reasoning block added, and an
earlier one (followed by tool messages) without it unless the turn has reasoning of its own: a
fixed plain turn renders differently once a tool message follows. The template below keeps
Qwen3's assistant and tool logic, with the character tokenizer's end token.
"""

from __future__ import annotations

import pytest

from tip_ray.envs.template import ToolMessageRenderer
from tip_ray.models.tiny import build_char_tokenizer

QWEN3_STYLE = r"""
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>user\n' + message.content + '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- set reasoning = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning) %}
            {{- '<|im_start|>assistant\n<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\n' + content }}
        {%- endif %}
        {{- '<eos>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""

TURN = '<think>\nI need the price first.\n</think>\n\n<tool_call>\n{"name": "price", "arguments": {"city": "Lyon"}}\n</tool_call>'


@pytest.mark.parametrize("answers", [["42 EUR"], ["42 EUR", "error: unknown tool 'fly'"]])
def test_tool_messages_after_a_thinking_turn_are_what_the_template_renders(answers):
    tokenizer = build_char_tokenizer(chat_template=QWEN3_STYLE)
    renderer = ToolMessageRenderer(tokenizer, max_tool_response_tokens=1024)  # refused before: not a prefix

    def render(messages, generation_prompt):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    user = [{"role": "user", "content": "Plan a day in Lyon."}]
    # What the model saw and wrote: the prompt with its header, then its thinking turn and end token.
    sampled = render(user, True) + TURN + "<eos>"
    tools = [{"role": "tool", "content": a} for a in answers]
    conversation = render(user + [{"role": "assistant", "content": TURN}] + tools, True)
    assert conversation == sampled + renderer._delta_text(answers)
    assert renderer._delta_text(answers).startswith("\n<|im_start|>user\n<tool_response>\n42 EUR")
    assert renderer._delta_text(answers).endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
