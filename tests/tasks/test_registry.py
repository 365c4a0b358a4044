"""The task registry: what the data source, the evaluation and the training metric ask for."""

from __future__ import annotations

import pickle

import pytest

from tip_ray.config.data import DemoData
from tip_ray.data.prompts import read_prompt_rows
from tip_ray.errors import TipRayError
from tip_ray.eval.benchmarks import BENCHMARKS, load_benchmark
from tip_ray.tasks import arithmetic
from tip_ray.tasks.registry import DEMO_TASK, TASKS, get_task


def test_every_task_makes_seeded_rows_it_grades_right():
    for name, task in TASKS.items():
        assert task.name == name
        rows = task.make_dataset(20, 7)
        assert rows == task.make_dataset(20, 7) and rows != task.make_dataset(20, 8)
        assert task.make_dataset(5, task.eval_seed) != task.make_dataset(5, 0)  # held-out split differs
        for row in rows:
            assert task.format_prompt(row)
            assert task.grade(row["solution"], row["answer"])
            assert not task.grade(row["solution"] + "1", row["answer"])  # a wrong final answer
        assert task.grade_all([r["solution"] for r in rows[:2]], ["0", rows[1]["answer"]]) == [False, True]


def test_unknown_task_names_the_known_ones():
    with pytest.raises(TipRayError, match=r"unknown task 'sudoku'; known tasks: arithmetic"):
        get_task("sudoku")


def test_demo_config_names_reach_the_arithmetic_task_through_the_registry():
    assert DEMO_TASK == "arithmetic" and get_task(DEMO_TASK).grade is arithmetic.grade
    rows, _ = read_prompt_rows(DemoData(type="demo", num_problems=4, seed=3))
    assert [(r.prompt, r.answer) for r in rows] == [(d["prompt"], d["answer"]) for d in arithmetic.make_dataset(4, 3)]
    assert all(info.task is None or info.task in TASKS for info in BENCHMARKS.values())
    problems = load_benchmark("demo", limit=3)
    assert [p.id for p in problems] == ["demo-0", "demo-1", "demo-2"]
    assert [p.answer for p in problems] == [d["answer"] for d in arithmetic.make_dataset(3, arithmetic.EVAL_SEED)]


def test_a_task_pickles_for_ray_actors():
    task = get_task(DEMO_TASK)
    again = pickle.loads(pickle.dumps(task))
    assert again.grade_all(["#### 5"], ["5"]) == [True]
