"""The teacher stage: prefill prompt+response and yield the teacher signal at response positions.

The signal for the token at position t comes from the teacher's distribution at t - 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from tip_ray.config.teacher import TeacherConfig, TopKSignal
from tip_ray.records import RolloutBatch, ScoredBatch
from tip_ray.scoring.hidden import final_hidden_at_responses
from tip_ray.tip.signal import FullLogProbs, TeacherHidden, TeacherSignal, signal_to, topk_from_logprobs


@dataclass(frozen=True)
class ScorerSettings:
    """The run's teacher section as written, plus what it does not say: the resolved teacher
    folder, the LM-head chunk (selection.stats_chunk_size), dtype, threads, name, vocabulary."""

    model_path: str
    teacher: TeacherConfig
    chunk_size: int = 512
    dtype: str = "float32"
    num_threads: int | None = None
    name: str = "teacher-0"
    vocab_size: int | None = None  # student vocabulary; a padded teacher head is cut to it


@torch.no_grad()
def chunked_logprobs(hidden: torch.Tensor, head: torch.Tensor, chunk_size: int):
    """Yield (start, log_softmax(hidden_chunk @ head.T)) in fp32, chunk by chunk."""
    for start in range(0, hidden.shape[0], chunk_size):
        chunk = hidden[start : start + chunk_size].float() @ head.float().T
        yield start, chunk.log_softmax(-1)


@torch.no_grad()
def sampled_token_logprobs(hidden, head, tokens, chunk_size) -> torch.Tensor:
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    for start, lp in chunked_logprobs(hidden, head, chunk_size):
        out[start : start + lp.shape[0]] = lp.gather(1, tokens[start : start + lp.shape[0], None]).squeeze(1)
    return out


def build_signal(hidden: torch.Tensor, head: torch.Tensor, form: str, k: int, chunk_size: int) -> TeacherSignal:
    if form == "hidden":
        return TeacherHidden(hidden=hidden)
    if form == "full":
        parts = [lp for _, lp in chunked_logprobs(hidden, head, chunk_size)]
        full = torch.cat(parts) if parts else torch.zeros((0, head.shape[0]))
        return FullLogProbs(logprobs=full)
    if form == "topk":
        parts = [topk_from_logprobs(lp, k) for _, lp in chunked_logprobs(hidden, head, chunk_size)]
        if not parts:
            return topk_from_logprobs(torch.zeros((0, head.shape[0])), k)
        return type(parts[0])(
            indices=torch.cat([p.indices for p in parts]),
            logprobs=torch.cat([p.logprobs for p in parts]),
            tail_logprob=torch.cat([p.tail_logprob for p in parts]),
        )
    raise ValueError(f"teacher.signal.type {form!r}: expected hidden, full or topk")


class TeacherScorer:
    def __init__(self, settings: ScorerSettings):
        from tip_ray.models.loading import limit_torch_threads, load_inference_model

        limit_torch_threads(settings.num_threads)
        self.settings = settings
        self.model = load_inference_model(settings.model_path, dtype=settings.dtype)
        head = self.model.get_output_embeddings().weight.detach()
        self.head = head[: settings.vocab_size] if settings.vocab_size else head

    def ready(self) -> str:
        return self.settings.name

    def score(self, rollout: RolloutBatch) -> ScoredBatch:
        start = time.perf_counter()
        s = self.settings
        hidden = final_hidden_at_responses(self.model, rollout, s.teacher.micro_batch_size)
        tokens = rollout.input_ids[rollout.response_mask].to(hidden.device)
        sampled = sampled_token_logprobs(hidden, self.head, tokens, s.chunk_size).cpu()
        # What leaves the teacher's GPU is the signal, in host memory for the object store.
        form = s.teacher.signal
        k = form.k if isinstance(form, TopKSignal) else 0
        signal = signal_to(build_signal(hidden, self.head, form.type, k, s.chunk_size), "cpu")
        return ScoredBatch(
            rollout=rollout,
            teacher=signal,
            teacher_sampled_logprobs=sampled,
            seconds=time.perf_counter() - start,
        )
