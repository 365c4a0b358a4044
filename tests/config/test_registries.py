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

