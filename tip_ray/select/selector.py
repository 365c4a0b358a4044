"""The select stage: TIP statistics for every response token, the selection rule, and a
SelectedBatch that carries only what the learner needs at the selected positions.

It holds a no-grad copy of the student (kept within the policy-lag bound by the controller) and,
for the `hidden` teacher form, a frozen copy of the teacher's LM head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from tip_ray.config.selection import SelectionConfig
from tip_ray.records import ScoredBatch, SelectedBatch, SelectionSummary
from tip_ray.scoring.hidden import final_hidden_at_responses
from tip_ray.scoring.merge import merge_scored
from tip_ray.select.per_teacher import per_teacher_stats, row_teachers
from tip_ray.select.rule_arguments import rule_arguments
from tip_ray.tip import (
    CutLines,
    index_signal,
    quadrant_labels,
    quadrant_summary,
    resolve_cut_lines,
    select_tokens,
    token_stats_from_hidden,
)
from tip_ray.tip.selection import Selection
from tip_ray.tip.signal import signal_to
from tip_ray.weights import VersionedWeights, WeightVersion


@dataclass(frozen=True)
class SelectorSettings:
    """The run's selection section as written, plus what it does not say: resolved folders,
    the forward micro-batch (teacher.micro_batch_size), the run seed, dtype, threads, name."""

    student_path: str
    teacher_head_path: str | None  # needed for the `hidden` teacher form
    selection: SelectionConfig
    micro_batch_size: int = 16
    seed: int = 0
    dtype: str = "float32"
    num_threads: int | None = None
    name: str = "selector-0"
    vocab_size: int | None = None  # student vocabulary; a padded teacher head is cut to it
    teacher_names: tuple[str, ...] = ()  # several teachers: their names, for per-teacher statistics


def scatter_rows(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N] values over the True entries of `mask` (row-major) into a zero-filled [B, T] tensor."""
    out = torch.zeros(mask.shape, dtype=values.dtype)
    out[mask] = values
    return out


class Selector:
    def __init__(self, settings: SelectorSettings):
        from tip_ray.models.loading import limit_torch_threads, load_inference_model
        from tip_ray.models.state_dict import load_full_state_dict
        from tip_ray.scoring.head import load_lm_head

        limit_torch_threads(settings.num_threads)
        self.settings = settings
        self.model = load_inference_model(settings.student_path, dtype=settings.dtype)
        self.weights = VersionedWeights(lambda sd: load_full_state_dict(self.model, sd))
        self.teacher_head = (
            load_lm_head(settings.teacher_head_path, rows=settings.vocab_size).to(self.device)
            if settings.teacher_head_path else None
        )
        self.calls = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def ready(self) -> str:
        return self.settings.name

    def _stats(self, scored: ScoredBatch):
        hidden = final_hidden_at_responses(self.model, scored.rollout, self.settings.micro_batch_size)
        head = self.model.get_output_embeddings().weight
        stats = token_stats_from_hidden(
            hidden, head, signal_to(scored.teacher, self.device), teacher_head=self.teacher_head,
            chunk_size=self.settings.selection.stats_chunk_size,
        )
        return type(stats)(entropy=stats.entropy.cpu(), reverse_kl=stats.reverse_kl.cpu(),
                           forward_kl=stats.forward_kl.cpu(), approximate=stats.approximate)

    @torch.no_grad()
    def select(self, weights: WeightVersion, *shards: ScoredBatch,
               teachers: tuple[int, ...] = ()) -> tuple[SelectedBatch, SelectionSummary]:
        """The learner's batch, and its summary as a separate small object for the controller.
        `teachers`: the teacher index of each shard, when the run has several."""
        self.weights.ensure(weights)
        self.calls += 1
        start = time.perf_counter()
        s = self.settings
        scored = merge_scored(shards)
        rollout = scored.rollout
        mask = rollout.response_mask
        stats = self._stats(scored)
        entropy = scatter_rows(stats.entropy, mask)
        reverse_kl = scatter_rows(stats.reverse_kl, mask)
        forward_kl = scatter_rows(stats.forward_kl, mask)
        gen = torch.Generator().manual_seed(s.seed * 1_000_003 + rollout.batch_id)
        finite = all(bool(torch.isfinite(t).all()) for t in (stats.entropy, stats.reverse_kl, stats.forward_kl))
        if finite:
            rule = s.selection.rule
            selection = select_tokens(
                rule.type,
                entropy=entropy,
                reverse_kl=reverse_kl,
                forward_kl=forward_kl,
                response_mask=mask,
                ratio=rule.ratio,
                generator=gen,
                **rule_arguments(rule),
            )
        else:
            # A bad teacher signal (NaN/inf) makes the statistics unusable: nothing is selected,
            # the summary's means stay non-finite, and the learner skips the step and counts it
            # (train.max_consecutive_bad_steps), whichever rule the run uses.
            selection = Selection(mask=torch.zeros_like(mask), weights=torch.zeros(mask.shape))
            entropy, reverse_kl = (torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0) for t in (entropy, reverse_kl))
        # Index of each response position in the flattened [N] teacher signal.
        flat_index = torch.full(mask.shape, -1, dtype=torch.long)
        flat_index[mask] = torch.arange(int(mask.sum()))
        positions = selection.mask.nonzero()
        rows_in_signal = flat_index[selection.mask]
        lines = s.selection.metrics_cuts
        cuts = resolve_cut_lines(
            entropy, reverse_kl, mask, lines.entropy, lines.divergence, mode=lines.mode,
            clip_quantile=lines.divergence_clip_quantile, entropy_clip_quantile=lines.entropy_clip_quantile,
        )
        labels = quadrant_labels(entropy, reverse_kl, mask, cuts)
        n_resp = int(mask.sum())
        per_teacher = {}
        if teachers and s.teacher_names:
            rows_teacher = row_teachers(teachers, [shard.rollout.input_ids.shape[0] for shard in shards])
            per_teacher = per_teacher_stats(s.teacher_names, rows_teacher, mask, selection.mask,
                                            entropy, reverse_kl, labels)
        summary = SelectionSummary(
            batch_id=rollout.batch_id,
            policy_version=rollout.policy_version,
            teacher_seconds=scored.seconds,
            num_response_tokens=n_resp,
            num_selected=int(positions.shape[0]),
            mean_entropy=float(stats.entropy.mean()) if n_resp else 0.0,
            mean_reverse_kl=float(stats.reverse_kl.mean()) if n_resp else 0.0,
            quadrants=quadrant_summary(labels, entropy, reverse_kl, mask),
            approximate=stats.approximate,
            selector_version=self.weights.version,
            seconds=time.perf_counter() - start,
            per_teacher=per_teacher,
        )
        selected = SelectedBatch(
            batch_id=rollout.batch_id,
            policy_version=rollout.policy_version,
            input_ids=rollout.input_ids,
            attention_mask=rollout.attention_mask,
            positions=positions,
            weights=selection.weights[selection.mask].float(),
            sampled_tokens=rollout.input_ids[selection.mask],
            # Select before transfer: only the selected rows of the teacher signal go on.
            teacher=index_signal(scored.teacher, rows_in_signal),
            teacher_sampled_logprobs=scored.teacher_sampled_logprobs[rows_in_signal],
            summary=summary,
        )
        return selected, summary

    def statistics(self, weights: WeightVersion, *shards: ScoredBatch):
        """The raw per-token statistics (for tests and analysis)."""
        self.weights.ensure(weights)
        return self._stats(merge_scored(shards))


__all__ = ["Selector", "SelectorSettings", "scatter_rows", "CutLines"]
