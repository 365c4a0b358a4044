"""Where the student's own tokens fall on the entropy-divergence plane before training: one
batch sampled and scored by the real stages, labelled with the run's quadrant cut lines."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tip_ray.config.pipeline import PipelineConfig
from tip_ray.tip.taxonomy import QUADRANTS


@dataclass(frozen=True)
class QuadrantView:
    """The same tokens labelled under one choice of cut lines."""

    title: str
    quadrant: torch.Tensor  # [N] 1..4
    entropy_cut: float
    divergence_cut: float

    def shares(self) -> dict[int, float]:
        n = max(self.quadrant.numel(), 1)
        return {q: float((self.quadrant == q).sum()) / n for q in QUADRANTS}


@dataclass(frozen=True)
class TokenMap:
    entropy: torch.Tensor  # [N] normalised student entropy
    divergence: torch.Tensor  # [N] reverse KL
    views: tuple[QuadrantView, ...]  # the run's own cut lines first, then the paper's mid lines


def sample_token_map(config: PipelineConfig, num_prompts: int) -> TokenMap:
    from tip_ray.data.prompts import PromptSampler
    from tip_ray.pipeline.placement import Role, plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.batches import make_prompt_batch
    from tip_ray.pipeline.stages import rollout_settings, scorer_settings, selector_settings
    from tip_ray.rollout.worker import RolloutWorker
    from tip_ray.select.selector import Selector
    from tip_ray.teacher.scorer import TeacherScorer
    from tip_ray.tip import quadrant_labels, resolve_cut_lines
    from tip_ray.weights import WeightVersion

    prepared = prepare_run(config, write=False)
    plans = plan_placement(config)
    batch = make_prompt_batch(PromptSampler(prepared.prompts, seed=config.train.seed, shuffle=True), 0, num_prompts)
    weights = WeightVersion(0)
    rollout = RolloutWorker(rollout_settings(prepared, plans[Role.ROLLOUT], 0)).generate(batch, weights)
    scored = TeacherScorer(scorer_settings(prepared, plans[Role.TEACHER], 0)).score(rollout)
    stats = Selector(selector_settings(prepared, plans[Role.SELECTOR], 0)).statistics(weights, scored)
    mask = torch.ones((1, stats.entropy.numel()), dtype=torch.bool)
    h, d = stats.entropy[None], stats.reverse_kl[None]
    cuts_cfg = config.selection.metrics_cuts
    views = []
    for title, mode, levels, entropy_clip, divergence_clip in (
        (f"run's cut lines ({cuts_cfg.mode} {cuts_cfg.entropy:g} / {cuts_cfg.divergence:g})",
         cuts_cfg.mode, (cuts_cfg.entropy, cuts_cfg.divergence), cuts_cfg.entropy_clip_quantile,
         cuts_cfg.divergence_clip_quantile),
        ("batch medians (quantile 0.5 / 0.5: Q2 = Q3 by construction)", "quantile", (0.5, 0.5), 1.0, 1.0),
        ("mid-range, entropy unclipped (minmax 0.5 / 0.5)", "minmax", (0.5, 0.5), 1.0, 1.0),
        ("mid-range of the p98-clipped entropy axis (the paper's)", "minmax", (0.5, 0.5), 0.98, 1.0),
        ("mid-range, both axes clipped at p98", "minmax", (0.5, 0.5), 0.98, 0.98),
    ):
        cuts = resolve_cut_lines(h, d, mask, *levels, mode=mode, clip_quantile=divergence_clip,
                                 entropy_clip_quantile=entropy_clip)
        views.append(QuadrantView(title, quadrant_labels(h, d, mask, cuts)[0], float(cuts.entropy), float(cuts.divergence)))
    return TokenMap(stats.entropy, stats.reverse_kl, tuple(views))
