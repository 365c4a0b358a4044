"""Tasks whose problems are generated and graded exactly by a program, by name.

The data source (`data.type: demo`), the evaluation (`eval.benchmark: demo`) and the training
accuracy metric ask this registry for a task instead of importing one: a new generated task is a
module with a dataset maker, a prompt formatter and a grader, plus one entry in TASKS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tip_ray.errors import TipRayError
from tip_ray.tasks import arithmetic, prices


class UnknownTask(TipRayError, ValueError):
    """A task name the registry does not hold."""


@dataclass(frozen=True)
class Task:
    """A generated task: how to make its problems, turn one into a prompt, and grade a response."""

    name: str
    make_dataset: Callable[[int, int], list[dict[str, str]]]
    """``(n, seed)`` -> n rows with at least ``prompt`` and ``answer`` (the same seed, the same rows)."""
    format_prompt: Callable[[dict[str, str]], str]
    """A row -> the text given to the model."""
    grade: Callable[[str, str], bool]
    """``(response, gold answer)`` -> whether the response's final answer is right."""
    eval_seed: int
    """Seed of the held-out evaluation split (differs from the training split's)."""
    eval_size: int
    """Problems in the held-out evaluation split."""
    environment: str | None = None
    """The tool environment (tip_ray.envs.registry) the task's problems need; None: single-turn."""

    def grade_all(self, responses: Sequence[str], golds: Sequence[str]) -> list[bool]:
        """One grade per response (the evaluation's grader interface)."""
        return [self.grade(r, g) for r, g in zip(responses, golds, strict=True)]


def _row_prompt(row: dict[str, str]) -> str:
    return row["prompt"]  # arithmetic rows carry their prompt already written out


TASKS: dict[str, Task] = {
    "arithmetic": Task(
        name="arithmetic",
        make_dataset=arithmetic.make_dataset,
        format_prompt=_row_prompt,
        grade=arithmetic.grade,
        eval_seed=arithmetic.EVAL_SEED,
        eval_size=arithmetic.EVAL_SIZE,
    ),
    "prices": Task(
        name="prices",
        make_dataset=prices.make_dataset,
        format_prompt=_row_prompt,
        grade=prices.grade,
        eval_seed=prices.EVAL_SEED,
        eval_size=prices.EVAL_SIZE,
        environment="prices",
    ),
}

DEMO_TASK = "arithmetic"
"""The task behind the config names ``data.type: demo`` and ``eval.benchmark: demo``."""


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
