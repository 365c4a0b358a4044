"""Benchmark loading from files the test writes, the demo benchmark, and the error messages."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tip_ray.tasks import arithmetic as task
from tip_ray.eval.benchmarks import (
    MATH_PROMPT_TEMPLATE,
    benchmark_info,
    load_benchmark,
    load_demo_benchmark,
    load_hf_benchmark,
    load_local_benchmark,
)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_are_normalised_with_the_math_template(tmp_path):
    file = write(tmp_path / "aime24.jsonl", [
        {"id": 60, "problem": "Find x.", "answer": "204"},
        {"question": "Find y.", "answer": 7},  # alternative field name, integer answer, no id
    ])
    problems = load_local_benchmark("aime24", file)
    assert problems[0].id == "60" and problems[0].answer == "204"
    assert problems[0].prompt == MATH_PROMPT_TEMPLATE.format(problem="Find x.")
    assert "\\boxed{}" in problems[0].prompt
    assert problems[1].id == "aime24-1" and problems[1].answer == "7"
    assert load_local_benchmark("aime24", tmp_path) == problems  # a folder holding aime24.jsonl


def test_errors_name_the_file_the_row_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="math500.jsonl"):
        load_local_benchmark("math500", tmp_path)
    bad = write(tmp_path / "bad.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "q"}])
    with pytest.raises(ValueError, match=r"bad.jsonl row 2.*\['answer', 'final_answer'\].*\['problem'\]"):
        load_local_benchmark("math500", bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "p", "answer": "1"}\n{not json\n')
    with pytest.raises(ValueError, match="broken.jsonl:2"):
        load_local_benchmark("math500", broken)
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'"):
        load_benchmark("gsm9k", path=tmp_path)
    with pytest.raises(ValueError, match="give a local path"):
        load_benchmark("aime25")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed")
def test_hub_benchmark_without_datasets_says_what_to_install():
    with pytest.raises(ImportError, match="pip install datasets"):
        load_hf_benchmark("math500")


def test_hub_benchmark_offline_fails_with_a_clear_message(tmp_path):
    # A fresh interpreter, so that the offline switches are read when datasets is imported.
    if importlib.util.find_spec("datasets") is None:
        pytest.skip("datasets is not installed (covered by the test above)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    code = "from tip_ray.eval.benchmarks import load_hf_benchmark; load_hf_benchmark('math500')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode != 0
    assert "could not load Hugging Face dataset 'HuggingFaceH4/MATH-500'" in done.stderr
    assert "give a local JSONL path" in done.stderr


def test_demo_benchmark_is_the_held_out_split():
    problems = load_demo_benchmark()
    assert len(problems) == task.EVAL_SIZE
    assert [p.prompt for p in problems[:5]] == [r["prompt"] for r in task.make_dataset(5, task.EVAL_SEED)]
    assert all(task.grade(task.solve(*map(int, p.prompt[:-1].split("+"))), p.answer) for p in problems)
    assert load_benchmark("demo", limit=10) == problems[:10]
    assert benchmark_info("demo").grader == "demo" and benchmark_info("math500").grader == "math"
