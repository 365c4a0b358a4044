"""`rollout.environment` in the YAML: single-turn by default, tools by registered name."""

from __future__ import annotations

import pytest
import yaml

from tip_ray.config import ConfigError, load_pipeline


def pipeline(tmp_path, environment=None):
    doc = {
        "name": "t",
        "models": {"student": {"type": "local", "path": str(tmp_path)}, "teacher": {"type": "local", "path": str(tmp_path)}},
        "data": {"type": "jsonl", "path": str(tmp_path / "d.jsonl")},
    }
    if environment is not None:
        doc["rollout"] = {"environment": environment}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_single_turn_is_the_default(tmp_path):
    assert load_pipeline(pipeline(tmp_path)).rollout.environment.type == "single_turn"


def test_tools_environment_with_its_limits(tmp_path):
    env = load_pipeline(pipeline(tmp_path, {"type": "tools", "name": "calculator", "max_turns": 4})).rollout.environment
    assert (env.name, env.max_turns, env.max_tool_response_tokens, env.tool_timeout_s) == ("calculator", 4, 1024, 30.0)


@pytest.mark.parametrize("environment, message", [
    ({"type": "tools", "name": "travel"}, "no environment 'travel'; known: single_turn, calculator"),
    ({"type": "tools", "name": "single_turn"}, "'single_turn' has no tools"),
    ({"type": "tools", "name": "calculator", "max_turns": 0}, "max_turns"),
    ({"type": "tools", "name": "calculator", "module": "os"}, "module"),
    ({"type": "agent"}, "environment"),
])
def test_bad_environments_are_refused_with_the_key_path(tmp_path, environment, message):
    with pytest.raises(ConfigError) as info:
        load_pipeline(pipeline(tmp_path, environment))
    assert message in str(info.value) and "rollout.environment" in str(info.value)
