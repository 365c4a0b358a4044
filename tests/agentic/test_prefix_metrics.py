"""env/prefix_cached_share: summed over a step's rollout shards, absent for backends that do not count."""

from __future__ import annotations

import pytest

from tip_ray.envs.episode import Episode, EnvironmentReport, environment_step_metrics


def shard(sent: int, cached: int) -> dict[str, float]:
    episode = Episode(turns=2, tool_calls=1, model_tokens=10, environment_tokens=5, stop="answered")
    return EnvironmentReport(episodes=(episode,), generation_seconds=1.0, tool_seconds=0.5,
                             prompt_tokens=sent, cached_prompt_tokens=cached).counts()


def test_the_cached_share_is_over_all_prompt_tokens_of_the_step():
    metrics = environment_step_metrics([shard(300, 256), shard(100, 0)])
    assert metrics["env/prefix_cached_share"] == pytest.approx(256 / 400)  # not the mean of 256/300 and 0
    assert metrics["env/trajectories"] == 2 and metrics["env/tool_calls"] == 2


def test_no_share_without_a_counting_backend():
    assert "env/prefix_cached_share" not in environment_step_metrics([shard(0, 0)])
