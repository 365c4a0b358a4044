"""Hostile configuration files: alias bombs, huge and deep documents, duplicate keys, includes that
reach outside the project, and numbers that mean nothing. Each fails fast with a ConfigError that
names the file and the place, and never quotes a file that is not a configuration."""

from __future__ import annotations

import math
import time
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from tip_ray.config.loader import ConfigError, format_validation_error, load_pipeline, parse_override
from tip_ray.config.numbers import MAX_CONFIG_INT, number_kinds
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.shipped import shipped_configs
from tip_ray.config.yaml_read import MAX_CONFIG_BYTES, MAX_EXPANDED_NODES


def base_doc() -> dict:
    return {
        "name": "limits",
        "models": {"student": {"type": "local", "path": "/s"}, "teacher": {"type": "local", "path": "/t"}},
        "data": {"type": "jsonl", "path": "/d.jsonl"},
    }


def load_text(tmp_path: Path, text: str, name: str = "p.yaml") -> ConfigError:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    assert time.perf_counter() - start < 5.0, "a hostile file must be refused fast"
    assert str(path) in str(info.value)
    return info.value


def alias_bomb(levels: int) -> str:
    """The "billion laughs": each level lists the previous one nine times (9**levels values)."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + yaml.safe_dump(base_doc())


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    error = load_text(tmp_path, alias_bomb(9))  # 1 KB that would expand to 387 million values
    assert "alias" in str(error) and str(MAX_EXPANDED_NODES) in str(error)


def test_aliases_within_the_limit_still_work(tmp_path):
    doc = "base: &m {type: local, path: /m}\nname: ok\nmodels: {student: *m, teacher: *m}\ndata: {type: jsonl, path: /d}\n"
    (tmp_path / "p.yaml").write_text(doc.replace("base: &m", "x-base: &m"))
    with pytest.raises(ConfigError, match="x-base"):  # an unknown key, but the aliases resolved
        load_pipeline(tmp_path / "p.yaml")


def test_huge_file_is_refused_without_parsing_it(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    error = load_text(tmp_path, path.read_text(), name="huge.yaml")
    assert "larger than" in str(error)


@pytest.mark.parametrize("text", [
    "a: " + "[" * 20000,
    "a: " + "{b: " * 5000,
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 300)),
    "a: &a [*a, *a]\nname: *a\n",
], ids=["flow-lists", "flow-maps", "block-maps", "self-alias"])
def test_deep_or_self_referencing_documents_are_clear_errors(tmp_path, text):
    error = load_text(tmp_path, text)
    assert "nested more than" in str(error) or "refers to the value that contains it" in str(error)


def test_duplicate_key_names_file_line_and_key(tmp_path):
    head = yaml.safe_dump(base_doc(), sort_keys=False)
    error = load_text(tmp_path, head + "train:\n  steps: 3\n  seed: 1\n  steps: 5\n")
    first, second = len(head.splitlines()) + 2, len(head.splitlines()) + 4
    assert f"line {second}: key 'steps' appears twice" in str(error) and f"first at line {first}" in str(error)


def test_duplicate_key_in_a_set_override_is_an_error():
    with pytest.raises(ConfigError, match="appears twice"):
        parse_override("rollout.sampling={temperature: 1, temperature: 2}")


# --------------------------------------------------------------------------- include scope


SECRET_LINE = "root:$6$notreallyahash:19000:0:99999:7:::"


@pytest.mark.parametrize("ref", ["{secret}", "../outside/{name}", "/proc/self/environ", "/etc/passwd"])
def test_include_outside_the_allowed_folders_is_refused_without_echoing_it(tmp_path, ref):
    pipeline_dir = tmp_path / "pipelines"
    pipeline_dir.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_text(f"{SECRET_LINE}\n")
    ref = ref.format(secret=secret, name="shadow")
    error = load_text(pipeline_dir, f"include: {ref}\n" + yaml.safe_dump(base_doc()))
    assert SECRET_LINE not in str(error) and "root:" not in str(error)
    assert "not a YAML piece" in str(error) or "outside the folders" in str(error)


def test_yaml_include_outside_the_tree_is_refused(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "elsewhere.yaml").write_text("train: {steps: 2}\n")
    error = load_text(tmp_path / "pipelines", "include: ../elsewhere.yaml\n" + yaml.safe_dump(base_doc()))
    assert "outside the folders includes may come from" in str(error)


def test_a_symlink_inside_the_tree_to_a_piece_outside_is_refused(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "outside.yaml").write_text("train: {steps: 2}\n")
    (tmp_path / "pipelines" / "piece.yaml").symlink_to(tmp_path / "outside.yaml")
    error = load_text(tmp_path / "pipelines", "include: piece.yaml\n" + yaml.safe_dump(base_doc()))
    assert "outside the folders includes may come from" in str(error)


def test_includes_from_the_pipeline_tree_and_configs_still_work(tmp_path):
    (tmp_path / "pieces").mkdir()
    (tmp_path / "pieces" / "train.yml").write_text("steps: 7\n")
    doc = base_doc() | {"train": {"include": "pieces/train.yml"}, "selection": {"include": "configs/selection/soft_or_50.yaml"}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    config = load_pipeline(tmp_path / "p.yaml")
    assert config.train.steps == 7 and config.selection.rule.type == "soft_or"
    assert (shipped_configs() / "selection" / "soft_or_50.yaml").is_file()


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ", "{shadow}"])
def test_a_pipeline_that_is_not_a_yaml_file_is_not_read(tmp_path, target):
    shadow = tmp_path / "shadow"
    shadow.write_text(f"{SECRET_LINE}\nname: {SECRET_LINE}\n")
    with pytest.raises(ConfigError, match=r"is a \.yaml or \.yml file") as info:
        load_pipeline(target.format(shadow=shadow))
    assert "root:" not in str(info.value)


def test_yaml_errors_give_the_place_not_the_text(tmp_path):
    error = load_text(tmp_path, "name: [unclosed\nsecret_line: hunter2-is-my-password\n")
    assert "line 2" in str(error) and "hunter2" not in str(error)


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("override, says", [
    ("learner.optimizer.lr=.inf", "learner.optimizer.lr: Input should be a finite number"),
    ("rollout.sampling.temperature=.inf", "rollout.sampling.temperature: Input should be a finite number"),
    ("learner.optimizer.weight_decay=.inf", "learner.optimizer.weight_decay: Input should be a finite number"),
    ("learner.optimizer.betas=[.nan, 2]", "learner.optimizer.betas.0: Input should be a finite number"),
    ("learner.optimizer.betas=[1.5, -1]", "learner.optimizer.betas.0: Input should be less than 1"),
    ("rollout.sampling.max_new_tokens=1.0e+20", f"rollout.sampling.max_new_tokens: 1e+20 is out of range: at most {MAX_CONFIG_INT}"),
    ("rollout.sampling.max_new_tokens=1e20", "rollout.sampling.max_new_tokens: Input should be a valid integer"),
    ("train.steps=true", "train.steps: expected a number, got the boolean true"),
    ("train.seed=99999999999", "train.seed: 99999999999 is out of range"),
    ("selection.rule={type: quadrant, weights: {1: .nan}}", "selection.rule.quadrant.weights.1: Input should be a finite number"),
])
def test_numbers_without_meaning_are_refused(tmp_path, override, says):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(base_doc()))
    with pytest.raises(ConfigError) as info:
        load_pipeline(tmp_path / "p.yaml", parse_override(override))
    assert says in str(info.value)


def config_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []

    def visit(annotation) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in found:
                found.append(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(PipelineConfig)
    return found


def numeric_fields() -> list[tuple[type[BaseModel], str, typing.Any]]:
    return [(model, name, field.annotation) for model in config_models()
            for name, field in model.model_fields.items() if number_kinds(field.annotation) - {bool}]


def shaped(annotation, leaf):
    """A value of the field's container shape with `leaf` in every numeric place."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, __import__("types").UnionType, typing.Annotated):
        return shaped(args[0], leaf)
    if origin is tuple:
        return [leaf for _ in args]
    if origin is list:
        return [leaf]
    if origin is dict:
        return {1: leaf}
    return leaf


def test_the_schema_walk_finds_the_numeric_fields():
    names = {name for _, name, _ in numeric_fields()}
    assert {"lr", "betas", "temperature", "max_new_tokens", "steps", "seed", "weights", "keep", "k"} <= names
    assert len(numeric_fields()) > 40


@pytest.mark.parametrize("model, name, annotation", numeric_fields(),
                         ids=lambda v: v.__name__ if isinstance(v, type) else str(v)[:20])
def test_every_numeric_field_refuses_inf_nan_bool_and_huge(model, name, annotation):
    """Each numeric field of the whole schema, whatever its constraints, refuses values that
    have no meaning; a new field is covered by this test without a word."""
    tag = {"type": typing.get_args(model.model_fields["type"].annotation)[0]} if "type" in model.model_fields else {}
    kinds = number_kinds(annotation)
    bad = [True, False]
    if float in kinds:
        bad += [math.inf, -math.inf, math.nan]
    elif int in kinds and typing.get_origin(annotation) is not list:
        bad += [2**40, -(2**40)]
    for value in bad:
        with pytest.raises(ValidationError) as info:
            model.model_validate(tag | {name: shaped(annotation, value)})
        rendered = format_validation_error(Path("p.yaml"), info.value)
        assert f"  - {name}" in rendered, f"{model.__name__}.{name}={value!r} was not refused by name:\n{rendered}"
