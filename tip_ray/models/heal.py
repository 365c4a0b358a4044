"""Healing a pruned student: a short distillation on text its teacher wrote.

The teacher answers prompts (or writes freely from its start token) once; the student is then
trained for a few steps to match the teacher's full next-token distribution on those responses
(forward KL, teacher || student), as layer-pruning recipes do before any further training.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tip_ray.errors import TipRayError


class PromptsFileError(TipRayError, ValueError):
    """A JSONL file of prompts (heal.prompts, a held-out set) cannot be read."""


@dataclass(frozen=True)
class Sample:
    """One teacher sample: prompt then response token ids (the response ends at EOS or the cap)."""

    prompt_ids: list[int]
    response_ids: list[int]


def read_prompts(path: str | Path, field: str, *, place: str = "heal.prompts",
                 field_key: str = "heal.prompt_field") -> list[str]:
    """The `field` of every row; errors name the setting that gave the file (`place`) and the one
    that names the field (`field_key`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PromptsFileError(f"{place}: {path} is not a file")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptsFileError(f"{place}: {path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise PromptsFileError(f"{place}: {path}:{number}: needs a string field {field!r} (set {field_key})")
        prompts.append(row[field])
    if not prompts:
        raise PromptsFileError(f"{place}: {path} holds no prompts")
    return prompts


def encode_prompt(tokenizer, text: str | None) -> list[int]:
    """Token ids of a prompt, through the chat template when the tokenizer has one; no text
    gives just the start token (BOS, else EOS)."""
    if text is None:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [int(start)]
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(text)["input_ids"]]


def _left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask


@torch.no_grad()
def sample_responses(model, tokenizer, prompts: list[str | None], max_new_tokens: int,
                    temperature: float = 1.0, seed: int = 0, batch_size: int = 8) -> list[Sample]:
    """A sampled response of ``model`` to each prompt, cut after its first EOS."""
    eos = int(tokenizer.eos_token_id)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    torch.manual_seed(seed)
    samples = []
    for start in range(0, len(prompts), batch_size):
        encoded = [encode_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
        ids, mask = _left_padded(encoded, pad)
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature,
                               top_k=0, top_p=1.0, max_new_tokens=max_new_tokens, eos_token_id=eos,
                               pad_token_id=pad)
        for prompt, row in zip(encoded, out[:, ids.shape[1]:].tolist()):
            response = row[: row.index(eos) + 1] if eos in row else row
            samples.append(Sample(prompt, response))
    return samples


def padded_batch(samples: list[Sample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, response_mask); response_mask marks the
    positions whose next-token distribution predicts a response token."""
    rows = [s.prompt_ids + s.response_ids for s in samples]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    predicts = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (s, row) in enumerate(zip(samples, rows)):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        predicts[i, len(s.prompt_ids) - 1: len(row) - 1] = True
    return ids, mask, predicts


def forward_kl(student, teacher, samples: list[Sample], pad_id: int) -> torch.Tensor:
    """Mean over response tokens of KL(teacher || student) of the next-token distributions."""
    ids, mask, predicts = padded_batch(samples, pad_id)
    with torch.no_grad():
        teacher_logp = F.log_softmax(teacher(input_ids=ids, attention_mask=mask).logits[predicts].float(), -1)
    student_logp = F.log_softmax(student(input_ids=ids, attention_mask=mask).logits[predicts].float(), -1)
    return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1).mean()


def heal(student, teacher, samples: list[Sample], steps: int, batch_size: int, lr: float, pad_id: int,
         seed: int = 0, progress: bool = False) -> list[float]:
    """Train ``student`` in place for ``steps`` AdamW steps on ``samples``; the losses, per step."""
    if steps == 0:
        return []
    rng = random.Random(seed)
    order: list[Sample] = []
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    student.train()
    losses = []
    for step in range(steps):
        if len(order) < batch_size:  # cycle through the samples, reshuffled each pass
            fresh = samples[:]
            rng.shuffle(fresh)
            order += fresh
        batch, order = order[:batch_size], order[batch_size:]
        loss = forward_kl(student, teacher, batch, pad_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if progress:
            print(f"heal step {step + 1}/{steps}: forward KL {losses[-1]:.4f}", flush=True)
    student.eval()
    return losses
