"""The demo arithmetic task: solutions are right step by step, grading and extraction, lengths."""

from __future__ import annotations

import json
import random
import re

import pytest

from tip_ray.tasks import arithmetic as task
from tip_ray.models.tiny import build_char_tokenizer

STEP = re.compile(r"^(\d)\+(\d)\+(\d)=(\d)(\d)$")


def check_solution_independently(a: int, b: int, solution: str) -> None:
    """Re-derive every column from the operands with plain integer arithmetic."""
    chain, answer = solution.split(" #### ")
    steps = chain.split(",")
    assert len(steps) == 4
    carry = 0
    for column, step in enumerate(steps):
        x, y, c, carry_out, digit = map(int, STEP.match(step).groups())
        assert x == a // 10**column % 10 and y == b // 10**column % 10
        assert c == carry
        assert 10 * carry_out + digit == x + y + c
        carry = carry_out
    assert int(answer) == a + b


def test_every_solution_is_correct_column_by_column():
    rng = random.Random(3)
    pairs = [(task.MIN_OPERAND, task.MIN_OPERAND), (task.MAX_OPERAND, task.MAX_OPERAND), (999, 1), (5005, 4995)]
    pairs += [(rng.randint(100, 9999), rng.randint(100, 9999)) for _ in range(300)]
    for a, b in pairs:
        check_solution_independently(a, b, task.solve(a, b))


def test_example_from_the_docstring():
    problem = task.ArithmeticProblem(1234, 987)
    assert problem.prompt == "1234+987="
    assert problem.solution == "4+7+0=11,3+8+1=12,2+9+1=12,1+0+1=02 #### 2221"
    assert problem.answer == "2221"


def test_dataset_is_seeded_and_splits_differ(tmp_path):
    assert task.make_dataset(50, seed=4) == task.make_dataset(50, seed=4)
    train = {r["prompt"] for r in task.make_dataset(200, task.TRAIN_SEED)}
    held_out = {r["prompt"] for r in task.make_dataset(200, task.EVAL_SEED)}
    assert len(train & held_out) < 5
    path = task.write_jsonl(tmp_path / "d" / "prompts.jsonl", n=20, seed=9)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == task.make_dataset(20, seed=9)
    assert set(rows[0]) == {"prompt", "answer", "solution"}


def test_grade_and_extract():
    problem = task.ArithmeticProblem(1234, 987)
    assert task.grade(problem.solution, "2221")
    assert not task.grade(problem.solution, "2222")
    assert task.grade("garbage #### 2221", "2221")
    assert task.grade("#### 99 then #### 2221", "2221")  # the last answer counts
    assert task.grade("####2221", " 2221 ")
    assert not task.grade("2221", "2221")  # no marker, no answer
    assert not task.grade("#### ", "2221")
    assert task.extract_answer("x #### 0042") == "42"
    assert task.extract_answer("nothing") is None
    with pytest.raises(ValueError, match="not an integer"):
        task.grade("#### 1", "one")


def test_responses_are_multi_token_chains_within_the_tokenizer():
    tokenizer = build_char_tokenizer(task.ALPHABET)
    lengths = []
    for record in task.make_dataset(300, seed=11):
        ids = tokenizer(record["solution"], add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.unk_token_id not in tokenizer(record["prompt"])["input_ids"]
        lengths.append(len(ids))
    assert 40 <= min(lengths) and max(lengths) <= 50  # tens of tokens, bounded for generation


def test_operands_out_of_range_are_refused():
    with pytest.raises(ValueError, match="outside"):
        task.solve(10_000, 1)
