"""The arithmetic task (the demo's): column addition written out digit by digit, checked by a program.

A problem is two numbers of 3 or 4 digits; the prompt is plain text, ``"1234+987="``. The
solution walks the four columns from the ones upward, each step ``x+y+c=CD`` (column digits
x and y, incoming carry c, two-digit column sum whose first digit C is the next carry and
second digit D the answer digit), and ends with the final answer after ``####``:

    1234+987=  ->  4+7+0=11,3+8+1=12,2+9+1=12,1+0+1=02 #### 2221

Every response is a chain of about 45 characters (one token each with the demo tokenizer), and
its tokens differ in difficulty (copying a digit vs. carrying vs. reversing the digits into the
answer), which is what token-level selection needs. Columns go from the least significant
digit upward so that each carry is known when it is written.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

MIN_OPERAND = 100
MAX_OPERAND = 9999
NUM_COLUMNS = 4  # enough for MAX_OPERAND; shorter operands are padded with 0 in the steps
ANSWER_MARKER = "####"
STEP_SEPARATOR = ","
# Every character a prompt or a solution can contain (the demo tokenizer's alphabet).
ALPHABET = "0123456789+=,# "

# Seeds of the demo's splits: the training prompts and the held-out evaluation set differ.
TRAIN_SEED = 0
EVAL_SEED = 1
EVAL_SIZE = 500
# A third split, for decisions taken while training (when to stop), so the reported held-out
# accuracy is not selected on.
VALIDATION_SEED = 2

_ANSWER_RE = re.compile(re.escape(ANSWER_MARKER) + r"\s*([+-]?\d+)")


@dataclass(frozen=True)
class ArithmeticProblem:
    """One addition problem with its prompt, gold answer and written-out solution."""

    a: int
    """First operand."""
    b: int
    """Second operand."""

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a + self.b)

    @property
    def solution(self) -> str:
        return solve(self.a, self.b)

    def to_record(self) -> dict[str, str]:
        """The JSONL row a pipeline reads: prompt, answer, and the reference solution."""
        return {"prompt": self.prompt, "answer": self.answer, "solution": self.solution}


def solve(a: int, b: int) -> str:
    """The step-by-step solution of ``a + b`` (see the module docstring for the format)."""
    for name, value in (("a", a), ("b", b)):
        if not 0 <= value <= MAX_OPERAND:
            raise ValueError(f"solve: {name}={value} is outside 0..{MAX_OPERAND}")
    a_digits = f"{a:0{NUM_COLUMNS}d}"[::-1]
    b_digits = f"{b:0{NUM_COLUMNS}d}"[::-1]
    carry = 0
    steps = []
    for x, y in zip(a_digits, b_digits):
        column_sum = int(x) + int(y) + carry
        steps.append(f"{x}+{y}+{carry}={column_sum:02d}")
        carry = column_sum // 10
    return f"{STEP_SEPARATOR.join(steps)} {ANSWER_MARKER} {a + b}"


def make_problem(rng: random.Random) -> ArithmeticProblem:
    """Draw two operands uniformly from MIN_OPERAND..MAX_OPERAND."""
    return ArithmeticProblem(a=rng.randint(MIN_OPERAND, MAX_OPERAND), b=rng.randint(MIN_OPERAND, MAX_OPERAND))


def make_problems(n: int, seed: int) -> list[ArithmeticProblem]:
    """``n`` problems from a seeded generator (the same seed gives the same list)."""
    if n < 0:
        raise ValueError(f"make_problems: n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [make_problem(rng) for _ in range(n)]


def make_dataset(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` JSONL-ready records with keys prompt, answer, solution."""
    return [p.to_record() for p in make_problems(n, seed)]


def write_jsonl(path: str | Path, n: int, seed: int) -> Path:
    """Write ``make_dataset(n, seed)`` as JSONL (one record a line) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for record in make_dataset(n, seed):
            f.write(json.dumps(record) + "\n")
    return out


def extract_answer(text: str) -> str | None:
    """The integer after the last ``####`` in ``text`` (sign and leading zeros dropped), or None."""
    matches = _ANSWER_RE.findall(text)
    if not matches:
        return None
    return str(int(matches[-1]))


def grade(response: str, answer: str) -> bool:
    """True when the final answer in ``response`` equals the integer ``answer``."""
    extracted = extract_answer(response)
    if extracted is None:
        return False
    try:
        return int(extracted) == int(answer.strip())
    except ValueError:
        raise ValueError(f"grade: gold answer {answer!r} is not an integer") from None
