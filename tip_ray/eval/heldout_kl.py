"""How far a student is from its teacher where it matters for on-policy distillation: the
reverse KL, KL(student || teacher) per token, on the student's own samples of prompts it was
never trained on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tip_ray.models.heal import Sample, padded_batch, sample_responses


@dataclass(frozen=True)
class HeldoutKL:
    mean_reverse_kl: float
    """Nats per response token, averaged over all response tokens of all samples."""
    tokens: int
    finished: float
    """Share of samples that ended with EOS within the token limit."""


@torch.no_grad()
def reverse_kl_on(student, teacher, samples: list[Sample], pad_id: int, batch_size: int = 4) -> tuple[float, int]:
    """(sum over response tokens of KL(student || teacher), number of tokens)."""
    total, count = 0.0, 0
    for start in range(0, len(samples), batch_size):
        ids, mask, predicts = padded_batch(samples[start:start + batch_size], pad_id)
        if not bool(predicts.any()):
            continue
        s_logp = F.log_softmax(student(input_ids=ids, attention_mask=mask).logits[predicts].double(), -1)
        t_logp = F.log_softmax(teacher(input_ids=ids, attention_mask=mask).logits[predicts].double(), -1)
        total += float((s_logp.exp() * (s_logp - t_logp)).sum())
        count += int(predicts.sum())
    return total, count


def heldout_reverse_kl(student_path: str, teacher_path: str, prompts: list[str], samples_per_prompt: int,
                       max_new_tokens: int, seed: int = 0, temperature: float = 1.0) -> HeldoutKL:
    """Sample the student on ``prompts`` (chat template applied when it has one), then measure,
    with the build thread count (tip_ray.models.cache.build_threads)."""
    from tip_ray.models.cache import build_threads, torch_threads

    with torch_threads(build_threads()):
        return _heldout_reverse_kl(student_path, teacher_path, prompts, samples_per_prompt, max_new_tokens,
                                   seed, temperature)


def _heldout_reverse_kl(student_path: str, teacher_path: str, prompts: list[str], samples_per_prompt: int,
                        max_new_tokens: int, seed: int, temperature: float) -> HeldoutKL:
    from tip_ray.models.loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(student_path)
    student = load_causal_lm(student_path).eval()
    teacher = load_causal_lm(teacher_path).eval()
    expanded = [p for p in prompts for _ in range(samples_per_prompt)]
    samples = sample_responses(student, tokenizer, expanded, max_new_tokens, temperature, seed)
    total, count = reverse_kl_on(student, teacher, samples, int(tokenizer.pad_token_id))
    eos = int(tokenizer.eos_token_id)
    finished = sum(1 for s in samples if s.response_ids and s.response_ids[-1] == eos) / max(len(samples), 1)
    return HeldoutKL(mean_reverse_kl=total / max(count, 1), tokens=count, finished=finished)
