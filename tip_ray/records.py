"""Typed records passed between the pipeline's stages.

    PromptBatch ─► RolloutBatch ─► ScoredBatch ─► SelectedBatch ─► (learner) StepResult

Sequences are laid out right-padded: row b holds the prompt tokens, then the response tokens,
then padding. ``response_mask[b, t]`` is True where ``input_ids[b, t]`` is a sampled token; the
distribution that predicted it sits at position t - 1. In a multi-turn trajectory the response
interleaves model-written tokens with environment tokens (tool output, chat-template glue);
those are attended to but are not response positions: ``response_mask`` is False there. Per-token quantities over "response
positions" are flattened row-major over ``response_mask`` (N = response_mask.sum()).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tip_ray.tip.signal import TeacherSignal


@dataclass(frozen=True)
class PromptBatch:
    """One update's prompts, in data order."""

    batch_id: int  # the training step that consumes this batch
    prompt_ids: tuple[tuple[int, ...], ...]  # token ids of each prompt (chat template applied)
    answers: tuple[str | None, ...]  # reference answers, for accuracy metrics
    prompt_rows: tuple[int, ...]  # dataset row of each prompt
    teachers: tuple[int, ...] = ()  # index of each prompt's teacher (several teachers); () = the one


@dataclass(frozen=True)
class RolloutBatch:
    """Student samples for one PromptBatch; rows are grouped by prompt (n per prompt)."""

    batch_id: int
    policy_version: int  # learner updates applied to the weights that sampled these rows
    input_ids: torch.Tensor  # [B, T] int64, prompt + response, right-padded with pad_token_id
    attention_mask: torch.Tensor  # [B, T] int64, 1 on real tokens
    response_mask: torch.Tensor  # [B, T] bool, True on sampled (model-written) tokens only
    prompt_index: torch.Tensor  # [B] int64, index of the row's prompt within the PromptBatch
    response_texts: tuple[str, ...]  # decoded responses, one per row
    seconds: float  # wall time of sampling
    prompt_rows: tuple[int, ...] = ()  # dataset rows of the batch's prompts
    environment: dict[str, float] = field(default_factory=dict)  # multi-turn counts (envs.episode), {} if single-turn

    @property
    def num_response_tokens(self) -> int:
        return int(self.response_mask.sum())

    def prompt_slice(self, start: int, stop: int) -> "RolloutBatch":
        """The rows of prompts [start, stop) of this batch (rows are grouped by prompt), with
        prompt indices counted from `start`: one teacher's part of a batch of several."""
        rows = ((self.prompt_index >= start) & (self.prompt_index < stop)).nonzero().squeeze(1)
        return RolloutBatch(
            batch_id=self.batch_id,
            policy_version=self.policy_version,
            input_ids=self.input_ids[rows],
            attention_mask=self.attention_mask[rows],
            response_mask=self.response_mask[rows],
            prompt_index=self.prompt_index[rows] - start,
            response_texts=tuple(self.response_texts[i] for i in rows.tolist()),
            seconds=self.seconds,
            prompt_rows=self.prompt_rows[start:stop],
            environment=self.environment,
        )


@dataclass(frozen=True)
class ScoredBatch:
    """A RolloutBatch with the teacher signal at every response position."""

    rollout: RolloutBatch
    teacher: TeacherSignal  # rows: the N response positions, row-major over response_mask
    teacher_sampled_logprobs: torch.Tensor  # [N] fp32, teacher log-prob of each sampled token
    seconds: float


@dataclass(frozen=True)
class SelectionSummary:
    """What the selector saw in one batch, for metrics (small: the controller fetches it)."""

    batch_id: int
    policy_version: int  # version that sampled the rollouts
    teacher_seconds: float  # teacher scoring time of the batch (slowest shard)
    num_response_tokens: int
    num_selected: int
    mean_entropy: float
    mean_reverse_kl: float
    quadrants: dict[str, float]  # share_q1..4, mean_entropy_q1..4, mean_divergence_q1..4
    approximate: bool  # stats came from an approximate (top-k) teacher signal
    selector_version: int  # policy version of the weights the statistics were computed with
    seconds: float
    per_teacher: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> stats (several teachers)


@dataclass(frozen=True)
class SelectedBatch:
    """What the learner needs: sequences, selected positions, weights, teacher signal there."""

    batch_id: int
    policy_version: int  # version that sampled the rollouts
    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T] int64
    positions: torch.Tensor  # [N_sel, 2] int64 (row, t) of selected response tokens
    weights: torch.Tensor  # [N_sel] fp32 per-token loss weights
    sampled_tokens: torch.Tensor  # [N_sel] int64, the sampled token at each selected position
    teacher: TeacherSignal  # rows aligned with `positions`
    teacher_sampled_logprobs: torch.Tensor  # [N_sel] fp32
    summary: SelectionSummary

    @property
    def num_selected(self) -> int:
        return int(self.positions.shape[0])

    def rows(self, start: int, stop: int) -> "SelectedBatch":
        """The sub-batch of sequences [start, stop), for data-parallel ranks and micro-batches."""
        keep = (self.positions[:, 0] >= start) & (self.positions[:, 0] < stop)
        idx = keep.nonzero().squeeze(1)
        from tip_ray.tip.signal import index_signal

        positions = self.positions[idx].clone()
        positions[:, 0] -= start
        return SelectedBatch(
            batch_id=self.batch_id,
            policy_version=self.policy_version,
            input_ids=self.input_ids[start:stop],
            attention_mask=self.attention_mask[start:stop],
            positions=positions,
            weights=self.weights[idx],
            sampled_tokens=self.sampled_tokens[idx],
            teacher=index_signal(self.teacher, idx),
            teacher_sampled_logprobs=self.teacher_sampled_logprobs[idx],
            summary=self.summary,
        )


@dataclass(frozen=True)
class StepResult:
    """One learner update, as every rank agrees on it."""

    step: int  # updates applied after this one (= the new policy version)
    loss: float  # global token-mean loss over the whole update
    grad_norm: float  # before clipping
    lr: float
    num_selected: int
    skipped: bool  # True when the step had a non-finite loss/grad and was not applied
    seconds: float
    peak_memory_mib: float  # learner peak (GPU allocator when on GPU, else process RSS)
    extra: dict[str, float] = field(default_factory=dict)
