"""The `teachers:` section and the row routing: what is accepted, and the errors for what is not
(no Ray, no model)."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError

from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.teachers import teacher_config_of
from tip_ray.data.prompts import DataError, EncodedPrompt
from tip_ray.data.teacher_routes import route_prompts
from tip_ray.pipeline.teacher_routing import route_batch, teacher_parts
from tip_ray.records import PromptBatch, RolloutBatch

BASE = {
    "name": "two",
    "models": {"student": {"type": "local", "path": "/s"}},
    "teachers": {"a": {"model": {"type": "local", "path": "/a"}},
                 "b": {"model": {"type": "local", "path": "/b"}, "num_scorers": 2,
                       "backend": {"type": "vllm"}}},
    "data": {"type": "jsonl", "path": "/d.jsonl", "teacher_field": "teacher"},
    "teacher": {"signal": {"type": "topk", "k": 8}, "num_scorers": 1, "micro_batch_size": 4},
}


def config(**changes) -> PipelineConfig:
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    return PipelineConfig.model_validate(doc)


def error_of(**changes) -> str:
    with pytest.raises(ValidationError) as info:
        config(**changes)
    return str(info.value)


def test_each_teacher_takes_the_shared_section_and_its_own_settings():
    c = config()
    a, b = (teacher_config_of(c.teacher, c.teachers[n]) for n in ("a", "b"))
    assert (a.backend.type, a.num_scorers, a.micro_batch_size) == ("hf", 1, 4)
    assert (b.backend.type, b.num_scorers, b.micro_batch_size) == ("vllm", 2, 4)
    assert a.signal == b.signal == c.teacher.signal
    assert list(c.teachers) == ["a", "b"]  # the first listed is the default


def test_one_teacher_pipelines_are_unchanged():
    c = config(teachers=None, models={"student": {"type": "local", "path": "/s"},
                                      "teacher": {"type": "local", "path": "/t"}},
               data={"type": "jsonl", "path": "/d.jsonl"})
    assert c.teachers is None and c.models.teacher.path == "/t"


def test_refusals_name_the_keys():
    assert "no teacher: set models.teacher" in error_of(teachers=None, data={"type": "jsonl", "path": "/d"})
    both = {"student": {"type": "local", "path": "/s"}, "teacher": {"type": "local", "path": "/t"}}
    assert "models.teacher and teachers: both" in error_of(models=both)
    hidden = error_of(teacher={"signal": {"type": "hidden"}}, teachers={k: {"model": {"type": "local", "path": k}}
                                                                         for k in ("a", "b")})
    assert "'hidden'" in hidden and "use teacher.signal.type 'full' or 'topk'" in hidden
    assert "teachers.b: " in error_of(teacher={"signal": {"type": "full"}})  # b's vllm backend needs top-k
    assert "teachers: name 'a b'" in error_of(teachers={"a b": {"model": {"type": "local", "path": "/a"}}})
    table = {"type": "jsonl", "path": "/d", "teacher_field": "source", "teacher_table": {"x": "a", "y": "c"}}
    assert "data.teacher_table names unknown teacher(s) 'c'; the teachers are a, b" in error_of(data=table)
    assert "set data.teacher_field" in error_of(data={"type": "jsonl", "path": "/d", "teacher_table": {"x": "a"}})
    one = {"student": {"type": "local", "path": "/s"}, "teacher": {"type": "local", "path": "/t"}}
    assert "data.teacher_field routes rows" in error_of(teachers=None, models=one)
    assert "extra" in error_of(teachers={"a": {"model": {"type": "local", "path": "/a"}, "signal": {"type": "full"}}})


def prompts(*teachers):
    return [EncodedPrompt(row=i, ids=(1, 2), answer=None, teacher=t) for i, t in enumerate(teachers)]


def test_rows_go_to_the_teacher_they_name_or_the_first():
    c = config()
    assert route_prompts(prompts("b", None, "a", "b"), c.data, ["a", "b"]) == {0: 1, 1: 0, 2: 0, 3: 1}
    with pytest.raises(DataError) as info:
        route_prompts(prompts("a", "zed"), c.data, ["a", "b"])
    assert str(info.value) == ("/d.jsonl:2: teacher names teacher 'zed', which teachers: does not define "
                               "(the teachers: a, b)")
    tabled = config(data={"type": "jsonl", "path": "/d.jsonl", "teacher_field": "src",
                          "teacher_table": {"math": "b", "code": "a"}}).data
    assert route_prompts(prompts("math", "code", None), tabled, ["a", "b"]) == {0: 1, 1: 0, 2: 0}
    with pytest.raises(DataError, match=r"/d.jsonl:1: src 'poetry' is not in data.teacher_table \(its sources: math, code\)"):
        route_prompts(prompts("poetry"), tabled, ["a", "b"])


def test_a_routed_batch_keeps_each_teachers_prompts_together_in_data_order():
    batch = PromptBatch(batch_id=3, prompt_ids=((1,), (2,), (3,), (4,), (5,)), answers=("1", "2", "3", "4", "5"),
                        prompt_rows=(10, 11, 12, 13, 14))
    routed = route_batch(batch, {10: 1, 11: 0, 12: 1, 13: 0})  # row 14: the default teacher
    assert routed.prompt_rows == (11, 13, 14, 10, 12) and routed.teachers == (0, 0, 0, 1, 1)
    assert routed.answers == ("2", "4", "5", "1", "3") and routed.prompt_ids[0] == (2,)
    assert teacher_parts(routed) == [(0, 0, 3), (1, 3, 5)]
    assert teacher_parts(batch) == [(0, 0, 5)]


def test_prompt_slice_takes_the_rows_of_a_prompt_range():
    ids = torch.arange(12).reshape(6, 2)
    rollout = RolloutBatch(batch_id=0, policy_version=0, input_ids=ids, attention_mask=torch.ones(6, 2, dtype=torch.long),
                           response_mask=torch.ones(6, 2, dtype=torch.bool),
                           prompt_index=torch.tensor([0, 0, 1, 1, 2, 2]), response_texts=tuple("abcdef"),
                           seconds=1.0, prompt_rows=(7, 8, 9))
    part = rollout.prompt_slice(1, 3)
    assert torch.equal(part.input_ids, ids[2:]) and part.prompt_index.tolist() == [0, 0, 1, 1]
    assert part.prompt_rows == (8, 9) and part.response_texts == tuple("cdef")


def test_the_shipped_two_teacher_pipeline_routes_its_rows_to_both_teachers():
    from pathlib import Path

    from tip_ray.config import load_pipeline
    from tip_ray.data.prompts import read_prompt_rows

    repo = Path(__file__).resolve().parents[2]
    config = load_pipeline(repo / "pipelines" / "demo_two_teachers.yaml")
    data = config.data.model_copy(update={"path": str(repo / config.data.path)})
    rows, _ = read_prompt_rows(data)
    routes = route_prompts([EncodedPrompt(row=r.row, ids=(), answer=r.answer, teacher=r.teacher) for r in rows],
                           data, list(config.teachers))
    assert sorted(set(routes.values())) == [0, 1]
    assert sum(1 for t in routes.values() if t == 1) == 196  # three_digit rows -> halved
    assert config.teacher.signal.type == "full" and list(config.teachers) == ["full", "halved"]
