"""Every strategy registry names exactly the variants of its config union, both ways: adding a
rule, loss or backend to one side without the other fails here, not in a run."""

from __future__ import annotations

import typing

import pytest

from tip_ray.config.loss import Loss
from tip_ray.config.rollout import RolloutBackend
from tip_ray.config.selection import SelectionRule
from tip_ray.config.teacher import TeacherBackend
from tip_ray.pipeline.teacher_backends import TEACHER_BACKENDS
from tip_ray.rollout.backends import ROLLOUT_BACKENDS
from tip_ray.tip.losses import LOSSES
from tip_ray.tip.selection import RULES


def union_names(union) -> list[str]:
    """The `type:` names of a discriminated union, in declaration order."""
    members = typing.get_args(typing.get_args(union)[0])
    names = [name for model in members for name in typing.get_args(model.model_fields["type"].annotation)]
    assert len(names) == len(set(names)) == len(members)
    return names


@pytest.mark.parametrize("union, registry", [
    (SelectionRule, RULES),
    (Loss, LOSSES),
    (RolloutBackend, ROLLOUT_BACKENDS),
    (TeacherBackend, TEACHER_BACKENDS),
], ids=["selection rules", "losses", "rollout backends", "teacher backends"])
def test_registry_matches_its_config_union(union, registry):
    names = union_names(union)
    assert sorted(registry) == sorted(names), (
        f"config names only: {sorted(set(names) - set(registry))}; registry names only: {sorted(set(registry) - set(names))}")



@pytest.mark.parametrize("name", union_names(SelectionRule))
def test_every_configured_rule_runs_with_its_own_options(name):
    """The selector hands each rule's config options to the method core by name: every option
    must be one the rule's implementation takes, and the defaults must run."""
    import torch

    from tip_ray.config.selection import SelectionConfig
    from tip_ray.select.rule_arguments import rule_arguments
    from tip_ray.tip.selection import select_tokens

    rule = SelectionConfig.model_validate({"rule": {"type": name}}).rule
    arguments = rule_arguments(rule)
    assert set(arguments) <= set(RULES[name].params()), sorted(set(arguments) - set(RULES[name].params()))
    g = torch.Generator().manual_seed(0)
    stats = {key: torch.rand(3, 7, generator=g, dtype=torch.float64) for key in ("entropy", "reverse_kl", "forward_kl")}
    mask = torch.ones(3, 7, dtype=torch.bool)
    selection = select_tokens(name, **stats, response_mask=mask, ratio=rule.ratio, generator=g, **arguments)
    assert selection.num_selected > 0


def test_quadrant_weights_replace_keep():
    """A quadrant rule with per-quadrant weights trains with those weights (keep, which always has
    a default, is not handed on beside them)."""
    import torch

    from tip_ray.config.selection import SelectionConfig
    from tip_ray.select.rule_arguments import rule_arguments
    from tip_ray.tip.selection import select_tokens

    rule = SelectionConfig.model_validate(
        {"rule": {"type": "quadrant", "weights": {1: 2.0, 3: 0.5}, "cuts": {"mode": "fixed"}}}).rule
    arguments = rule_arguments(rule)
    assert "keep" not in arguments and arguments["weights"] == {1: 2.0, 3: 0.5}
    # entropy, divergence against the fixed 0.5 lines: Q1 high/high, Q2 high/low, Q3 low/high, Q4 low/low.
    entropy = torch.tensor([[0.9, 0.9, 0.1, 0.1]], dtype=torch.float64)
    divergence = torch.tensor([[0.9, 0.1, 0.9, 0.1]], dtype=torch.float64)
    selection = select_tokens("quadrant", entropy=entropy, reverse_kl=divergence, forward_kl=divergence,
                              response_mask=torch.ones(1, 4, dtype=torch.bool), **arguments)
    assert selection.weights.tolist() == [[2.0, 0.0, 0.5, 0.0]]


def test_divergence_clip_reaches_the_quadrant_rule_and_is_range_checked():
    """`cuts.divergence_clip_quantile` ends the divergence axis at a batch quantile: one far-off
    token no longer pushes every other token under the mid line."""
    import torch
    from pydantic import ValidationError

    from tip_ray.config.selection import SelectionConfig
    from tip_ray.select.rule_arguments import rule_arguments
    from tip_ray.tip.selection import select_tokens

    def q3_kept(clip: float) -> list[bool]:
        rule = SelectionConfig.model_validate({"rule": {"type": "quadrant", "keep": [3], "cuts": {
            "mode": "minmax", "entropy_clip_quantile": 1.0, "divergence_clip_quantile": clip}}}).rule
        arguments = rule_arguments(rule)
        assert arguments["divergence_clip_quantile"] == clip
        entropy = torch.tensor([[0.0, 0.1, 0.2, 1.0, 0.9]], dtype=torch.float64)
        divergence = torch.tensor([[100.0, 2.0, 1.5, 0.1, 0.0]], dtype=torch.float64)
        selection = select_tokens("quadrant", entropy=entropy, reverse_kl=divergence, forward_kl=divergence,
                                  response_mask=torch.ones(1, 5, dtype=torch.bool), **arguments)
        return selection.mask[0].tolist()

    # Unclipped, the line sits at 50 nats: only the far-off token is Q3. Ending the axis at the
    # batch median (1.5) puts the line at 0.75: the two confident, wrong tokens join it.
    assert q3_kept(1.0) == [True, False, False, False, False]
    assert q3_kept(0.5) == [True, True, True, False, False]
    for bad in (0.0, 1.5):
        with pytest.raises(ValidationError, match="divergence_clip_quantile"):
            SelectionConfig.model_validate({"metrics_cuts": {"divergence_clip_quantile": bad}})
    assert SelectionConfig().metrics_cuts.divergence_clip_quantile == 1.0  # the paper's: no clip
