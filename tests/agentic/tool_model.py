"""A tiny real Hugging Face model taught, in a few seconds, to write given tool calls.

The tokenizer is the character tokenizer with a chat template that has a tool role; the model
is trained (to memorisation) on scripted conversations, so greedy decoding writes the scripted
turns: a real model and a real `generate`, whose outputs the tests know in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tip_ray.models.tiny import TinyModelSpec, build_char_tokenizer, build_tiny_model, save_model

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}U:{{ m['content'] }}|"
    "{% elif m['role'] == 'assistant' %}A:{{ m['content'] }}<eos>|"
    "{% elif m['role'] == 'tool' %}T:{{ m['content'] }}|"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)


def call(name: str, **arguments) -> str:
    # Compact JSON: fewer characters for the tiny model to learn.
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}, separators=(",", ":")) + "</tool_call>"


# user message -> the conversation that follows it (assistant, tool, assistant, ...)
SCRIPTS: dict[str, list[tuple[str, str]]] = {
    "add": [("assistant", call("add", a=2, b=3)), ("tool", "5"), ("assistant", "5")],
    "hang": [("assistant", call("hang"))],
    "boom": [("assistant", call("boom"))],
    "bad": [("assistant", '<tool_call>{"name":"add","arguments":{"a":2,</tool_call>')],
    "big": [("assistant", call("big"))],
    "hi": [("assistant", "hello")],
}


def conversation(user: str) -> list[dict]:
    return [{"role": "user", "content": user}] + [{"role": r, "content": c} for r, c in SCRIPTS[user]]


def build_tool_model(out_dir: Path, steps: int = 600) -> tuple[Path, int]:
    """The model folder, and the optimizer steps it took to write every scripted token greedily."""
    tokenizer = build_char_tokenizer(chat_template=CHAT_TEMPLATE)
    model = build_tiny_model(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=2,
                                           intermediate_size=128), len(tokenizer), seed=0)
    texts = [tokenizer.apply_chat_template(conversation(u), tokenize=False) for u in SCRIPTS]
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]  # as the pipeline encodes
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    # What must come out exactly: every token after the prompt (the user's words are not predictable).
    scripted = torch.zeros_like(mask)
    for i, user in enumerate(SCRIPTS):
        scripted[i, len(prompt_ids(tokenizer, user)) : len(rows[i])] = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared CPU
    try:
        taken = _train(model, optimizer, ids, mask, labels, scripted, steps)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    return save_model(model, tokenizer, out_dir), taken


def prompt_ids(tokenizer, user: str) -> list[int]:
    """The prompt as the pipeline's data loader encodes it."""
    from tip_ray.data.prompts import encode_prompt

    return encode_prompt(tokenizer, user, use_chat_template=True)


def _train(model, optimizer, ids, mask, labels, scripted, steps) -> int:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for step in range(steps):
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if step % 25 == 24:
                predicted = out.logits[:, :-1].argmax(-1)
                wrong = ((predicted != ids[:, 1:]) & (scripted[:, 1:] == 1)).sum()
                if int(wrong) == 0:
                    return step + 1
    return steps


def model_runs(tokenizer, sample) -> list[str]:
    """The model-written stretches of a trajectory, decoded (one per turn)."""
    runs, current = [], []
    for token, written in zip(sample.response_ids, sample.model_written):
        if written:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(r, skip_special_tokens=True) for r in runs]
