"""Bad configs fail with one clear message that names the file, the key path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tip_ray.config import ConfigError, load_pipeline, parse_override

REPO = Path(__file__).resolve().parents[2]


def minimal(tmp_path: Path) -> dict:
    return {
        "name": "t",
        "models": {"student": {"type": "local", "path": str(tmp_path)}, "teacher": {"type": "local", "path": str(tmp_path)}},
        "data": {"type": "jsonl", "path": str(tmp_path / "d.jsonl")},
    }


def write(tmp_path: Path, doc: dict, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    return str(info.value)


def test_minimal_config_loads_with_defaults(tmp_path):
    config = load_pipeline(write(tmp_path, minimal(tmp_path)))
    assert config.selection.rule.type == "all"
    assert config.train.max_policy_lag == 0


def test_misspelled_key_names_path_and_suggests(tmp_path):
    doc = minimal(tmp_path)
    doc["train"] = {"stpes": 3}
    message = error_of(write(tmp_path, doc))
    assert "p.yaml" in message and "train.stpes" in message and "did you mean 'steps'" in message


def test_misspelled_key_inside_a_strategy(tmp_path):
    doc = minimal(tmp_path)
    doc["selection"] = {"rule": {"type": "soft_or", "ratio": 0.5, "entropy_clip": 0.9}}
    message = error_of(write(tmp_path, doc))
    assert "selection.rule.soft_or.entropy_clip" in message and "entropy_clip_quantile" in message


def test_wrong_type_names_the_value(tmp_path):
    doc = minimal(tmp_path)
    doc["learner"] = {"num_ranks": "two"}
    message = error_of(write(tmp_path, doc))
    assert "learner.num_ranks" in message and "'two'" in message


def test_unknown_rule_lists_the_valid_ones(tmp_path):
    doc = minimal(tmp_path)
    doc["selection"] = {"rule": {"type": "entropy_top"}}
    message = error_of(write(tmp_path, doc))
    for rule in ("all", "soft_or", "q3_only", "quadrant", "entropy_sample"):
        assert rule in message


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.01])
def test_ratio_out_of_range(tmp_path, ratio):
    doc = minimal(tmp_path)
    doc["selection"] = {"rule": {"type": "random", "ratio": ratio}}
    assert "ratio must be in (0, 1]" in error_of(write(tmp_path, doc))


def test_missing_section(tmp_path):
    doc = minimal(tmp_path)
    del doc["data"]
    message = error_of(write(tmp_path, doc))
    assert "data: required key is missing" in message


def test_roles_must_name_declared_pools(tmp_path):
    doc = minimal(tmp_path)
    doc["cluster"] = {"pools": {"teacher": {"resource": "teacher_pool"}}}
    message = error_of(write(tmp_path, doc))
    assert "roles.rollout names pool 'student'" in message


def test_unknown_pool_resource(tmp_path):
    doc = minimal(tmp_path)
    doc["cluster"] = {"pools": {"teacher": {"resource": "gpu_pool"}, "student": {"resource": "student_pool"}}}
    assert "unknown pool resource 'gpu_pool'" in error_of(write(tmp_path, doc))


def test_vllm_teacher_needs_topk(tmp_path):
    doc = minimal(tmp_path)
    doc["teacher"] = {"backend": {"type": "vllm"}, "signal": {"type": "full"}}
    assert "teacher.signal.type" in error_of(write(tmp_path, doc))


@pytest.mark.parametrize("teacher, key, shown", [
    ({"backend": "vllm", "signal": {"type": "topk"}}, "teacher.backend", "backend: {type: vllm}"),
    ({"backend": "hf"}, "teacher.backend", "backend: {type: hf}"),
    ({"backend": "server", "signal": {"type": "topk"}}, "teacher.backend", "backend: {type: server, url: http://HOST:PORT"),
    ({"backend": "server", "server": {"url": "http://h:1"}, "signal": {"type": "topk"}}, "teacher.server",
     "backend: {type: server, url: http://HOST:PORT"),
])
def test_old_teacher_backend_spelling_shows_the_new_one(tmp_path, teacher, key, shown):
    doc = minimal(tmp_path)
    doc["teacher"] = teacher
    message = error_of(write(tmp_path, doc))
    assert f"{key}: " in message and shown in message, message


def test_loss_options_belong_to_their_loss(tmp_path):
    doc = minimal(tmp_path)
    doc["loss"] = {"type": "reverse_kl", "beta": 0.3}
    message = error_of(write(tmp_path, doc))
    assert "loss.beta: beta is an option of the jsd loss only" in message and "loss: {type: jsd, beta: 0.3}" in message, message
    doc["loss"] = {"type": "jsd", "beta": 0.3}
    config = load_pipeline(write(tmp_path, doc))
    assert config.loss.type == "jsd" and config.loss.beta == 0.3
    doc["loss"] = {"type": "forward_kl", "chunk_size": 64, "bogus": 1}
    assert "loss.forward_kl.bogus: unknown key" in error_of(write(tmp_path, doc))
    doc["loss"] = {"type": "kl"}
    assert "'reverse_kl', 'forward_kl', 'jsd', 'k1', 'k3'" in error_of(write(tmp_path, doc))


def test_include_merges_and_own_keys_win(tmp_path):
    (tmp_path / "piece.yaml").write_text(yaml.safe_dump({"rule": {"type": "soft_or", "ratio": 0.5}}))
    doc = minimal(tmp_path)
    doc["selection"] = {"include": "piece.yaml", "rule": {"type": "soft_or", "ratio": 0.2}}
    config = load_pipeline(write(tmp_path, doc))
    assert config.selection.rule.type == "soft_or" and config.selection.rule.ratio == 0.2


def test_include_of_a_missing_file(tmp_path):
    doc = minimal(tmp_path)
    doc["selection"] = {"include": "nope.yaml"}
    message = error_of(write(tmp_path, doc))
    assert "selection.include" in message and "nope.yaml" in message


def test_include_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    assert "cycle" in error_of(tmp_path / "a.yaml")


def test_yaml_cannot_construct_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    assert "not valid YAML" in error_of(path)


def test_empty_and_non_mapping_files(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert "empty" in error_of(tmp_path / "empty.yaml")
    assert "mapping" in error_of(tmp_path / "list.yaml")


def test_overrides_parse_as_yaml_values():
    assert parse_override("train.steps=5") == {"train": {"steps": 5}}
    assert parse_override("selection.rule={type: all}") == {"selection": {"rule": {"type": "all"}}}
    with pytest.raises(ConfigError):
        parse_override("train.steps")
