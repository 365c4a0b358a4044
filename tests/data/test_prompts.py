"""Prompt datasets: line-numbered errors before a run starts, skip-and-count, and a seeded,
epoch-aware order that a restored position continues exactly."""

from __future__ import annotations

import json

import pytest

from tip_ray.config.data import JsonlData
from tip_ray.data.prompts import DataError, DataPosition, EncodedPrompt, PromptSampler, read_prompt_rows


def source(path, **kw) -> JsonlData:
    return JsonlData(type="jsonl", path=str(path), **kw)


def test_reads_prompt_and_answer(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "1+1=", "answer": 2}\n\n{"prompt": "2+2="}\n')
    rows, report = read_prompt_rows(source(path))
    assert [(r.row, r.prompt, r.answer) for r in rows] == [(0, "1+1=", "2"), (2, "2+2=", None)]
    assert report.rows_read == 2 and not report.skipped_bad


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON.*bad_rows: skip"):
        read_prompt_rows(source(path))


def test_missing_prompt_field_names_line_and_fields(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a"}\n{"question": "b"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: missing prompt field 'prompt' \(fields present: question\)"):
        read_prompt_rows(source(path))


def test_skip_mode_counts_bad_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a"}\nnot json\n[1]\n{"q": 1}\n{"prompt": ""}\n{"prompt": "b"}\n')
    rows, report = read_prompt_rows(source(path, bad_rows="skip"))
    assert [r.prompt for r in rows] == ["a", "b"]
    assert len(report.skipped_bad) == 4
    assert report.skipped_bad[0].startswith(f"{path}:2:")


def test_empty_dataset_fails(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n\n")
    with pytest.raises(DataError, match="no usable rows"):
        read_prompt_rows(source(path))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_prompt_rows(source(tmp_path / "nope.jsonl"))


def test_custom_fields_and_limit(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"problem": f"p{i}", "solution": str(i)}) + "\n" for i in range(10)))
    rows, _ = read_prompt_rows(source(path, prompt_field="problem", answer_field="solution", limit=3))
    assert [(r.prompt, r.answer) for r in rows] == [("p0", "0"), ("p1", "1"), ("p2", "2")]


def prompts(n):
    return [EncodedPrompt(row=i, ids=(i,), answer=None) for i in range(n)]


def test_sampler_covers_each_epoch_once_and_reshuffles():
    sampler = PromptSampler(prompts(10), seed=3, shuffle=True)
    first = [p.row for _, p in sampler.next_batch(10)]
    second = [p.row for _, p in sampler.next_batch(10)]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second  # a new permutation each epoch
    assert sampler.position == DataPosition(epoch=1, index=10)


def test_sampler_batches_straddle_epochs():
    sampler = PromptSampler(prompts(5), seed=0, shuffle=False)
    batches = [[p.row for _, p in sampler.next_batch(3)] for _ in range(3)]
    assert batches == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]


def test_restored_position_continues_identically():
    a = PromptSampler(prompts(7), seed=5, shuffle=True)
    for _ in range(4):
        a.next_batch(3)
    saved = a.position
    expected = [[p.row for _, p in a.next_batch(3)] for _ in range(3)]
    b = PromptSampler(prompts(7), seed=5, shuffle=True)
    b.position = saved
    assert [[p.row for _, p in b.next_batch(3)] for _ in range(3)] == expected
