"""train.queue_capacity is gone: max_policy_lag alone bounds the batches in flight (L + 1, checked
on a real run in test_pipeline_ray), and an old config that still sets it is refused by name."""

from __future__ import annotations

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config import load_pipeline
from tip_ray.config.loader import ConfigError


def test_queue_capacity_is_refused_naming_the_key_and_the_allowed_ones(tiny_pair, demo_prompts, tmp_path):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run",
                            train={"steps": 3, "max_policy_lag": 1, "queue_capacity": 4})
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    message = str(caught.value)
    assert str(path) in message
    assert "train.queue_capacity: unknown key" in message
    assert "max_policy_lag" in message  # the allowed keys are listed
