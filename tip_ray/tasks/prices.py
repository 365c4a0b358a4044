"""The price-lookup task: add an item's price, which only a tool knows, to a given amount.

A prompt names an item code and an amount, ``"SKU4821+487="``. The price of the item is not in the
prompt and cannot be worked out from the code (it is a hash of it), so a model has to call the
environment's ``price`` tool, read the answer, and then add, written out column by column as in
the arithmetic task. The model's side of a solved conversation:

    assistant: <tool_call>{"name":"price","arguments":{"item":"SKU4821"}}</tool_call>
    tool:      734
    assistant: 734+487=4+7+0=11,3+8+1=12,7+4+1=12,0+0+1=01 #### 1221

The last turn first writes the sum out (the price copied from the tool's answer, the amount
from the prompt), then works it as the arithmetic task does. The checker grades the final
answer only; a model that skips the tool can only guess. The
``prices`` environment (tip_ray.envs.registry) serves the tool.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from dataclasses import dataclass

from tip_ray.envs.base import Environment
from tip_ray.tasks import arithmetic

TOOL_NAME = "price"
MIN_PRICE, MAX_PRICE = 100, 999
MIN_AMOUNT, MAX_AMOUNT = 100, 8999  # price + amount stays within the arithmetic task's 4 columns
ITEM_PREFIX = "SKU"
# Codes are digits after a fixed prefix: the demo models already read and copy digits, so the
# tool call is quick to teach (codes of fresh letters took hundreds more steps to copy right).
ITEM_PATTERN = re.compile(r"^SKU[0-9]{4}$")

TRAIN_SEED = 0
EVAL_SEED = 1
EVAL_SIZE = 500
VALIDATION_SEED = 2

# Characters beyond arithmetic's: a tool call's, the chat template's, and an error message's
# (a malformed call is answered in words), so that nothing the model reads is unknown.
EXTRA_ALPHABET = string.ascii_letters + string.punctuation


def price_of(item: str) -> int:
    """The item's price: a fixed hash of its code, the same in every process and on every machine."""
    if not isinstance(item, str) or not ITEM_PATTERN.match(item):
        raise KeyError(f"no item {item!r}: item codes are SKU and four digits, like 'SKU4821'")
    digest = hashlib.sha256(item.encode("ascii")).digest()
    return MIN_PRICE + int.from_bytes(digest[:4], "big") % (MAX_PRICE - MIN_PRICE + 1)


def price(item: str) -> int:
    """The ``price`` tool."""
    return price_of(item)


PRICE_SCHEMA = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "The price of an item, by its code.",
        "parameters": {
            "type": "object",
            "properties": {"item": {"type": "string", "description": "SKU and four digits."}},
            "required": ["item"],
        },
    },
}


def prices_environment() -> Environment:
    """The task's environment: one tool, ``price``."""
    return Environment(name="prices", tools={TOOL_NAME: price}, schemas=(PRICE_SCHEMA,))


def tool_call_text(item: str) -> str:
    """The model's call, in the Hermes format, compact (no spaces)."""
    body = json.dumps({"name": TOOL_NAME, "arguments": {"item": item}}, separators=(",", ":"))
    return f"<tool_call>{body}</tool_call>"


@dataclass(frozen=True)
class PriceProblem:
    item: str
    amount: int

    @property
    def prompt(self) -> str:
        return f"{self.item}+{self.amount}="

    @property
    def price(self) -> int:
        return price_of(self.item)

    @property
    def answer(self) -> str:
        return str(self.price + self.amount)

    def worked_sum(self) -> str:
        """The final turn: the sum written out, then worked column by column."""
        return f"{self.price}+{self.amount}=" + arithmetic.solve(self.price, self.amount)

    def conversation(self) -> list[dict[str, str]]:
        """The solved conversation: the call, the tool's answer, the worked sum."""
        return [
            {"role": "user", "content": self.prompt},
            {"role": "assistant", "content": tool_call_text(self.item)},
            {"role": "tool", "content": str(self.price)},
            {"role": "assistant", "content": self.worked_sum()},
        ]

    def to_record(self) -> dict[str, str]:
        """The row a pipeline reads; ``solution`` is the final turn of the solved conversation."""
        return {"prompt": self.prompt, "answer": self.answer, "item": self.item, "solution": self.worked_sum()}


def make_problem(rng: random.Random) -> PriceProblem:
    item = f"{ITEM_PREFIX}{rng.randrange(10_000):04d}"
    return PriceProblem(item=item, amount=rng.randint(MIN_AMOUNT, MAX_AMOUNT))


def make_problems(n: int, seed: int) -> list[PriceProblem]:
    if n < 0:
        raise ValueError(f"make_problems: n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [make_problem(rng) for _ in range(n)]


def make_dataset(n: int, seed: int) -> list[dict[str, str]]:
    return [p.to_record() for p in make_problems(n, seed)]


def grade(response: str, answer: str) -> bool:
    """The final answer (after the last ``####``) equals the gold sum."""
    return arithmetic.grade(response, answer)
