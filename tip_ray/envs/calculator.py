"""A small built-in tool environment (exact integer arithmetic), for tests and examples."""

from __future__ import annotations

from tip_ray.envs.base import Environment


def add(a: int, b: int) -> int:
    return int(a) + int(b)


def multiply(a: int, b: int) -> int:
    return int(a) * int(b)


def _schema(name: str, description: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                           "required": ["a", "b"]},
        },
    }


def calculator_environment() -> Environment:
    return Environment(
        name="calculator",
        tools={"add": add, "multiply": multiply},
        schemas=(_schema("add", "a + b"), _schema("multiply", "a * b")),
    )
