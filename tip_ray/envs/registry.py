"""Environments by name: the built-ins, then installed packages' ``tip_ray.environments`` entry points.

An entry point names an object in its package: an ``Environment``, or a callable with no
arguments that returns one. Loading happens only for the name a pipeline asks for.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

from tip_ray.envs.base import Environment, EnvironmentConfigError

ENTRY_POINT_GROUP = "tip_ray.environments"


def _single_turn() -> Environment:
    return Environment(name="single_turn")


def _calculator() -> Environment:
    from tip_ray.envs.calculator import calculator_environment

    return calculator_environment()


def _prices() -> Environment:
    from tip_ray.tasks.prices import prices_environment

    return prices_environment()


BUILTIN: dict[str, Callable[[], Environment]] = {
    "single_turn": _single_turn, "calculator": _calculator, "prices": _prices,
}


def _installed() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def environment_names() -> list[str]:
    """Every name a pipeline may use: built-ins first, then installed ones."""
    return list(BUILTIN) + sorted(set(_installed()) - set(BUILTIN))


def load_environment(name: str) -> Environment:
    """The environment registered as `name`; an unknown name lists the known ones."""
    if name in BUILTIN:
        return BUILTIN[name]()
    installed = _installed()
    if name not in installed:
        raise EnvironmentConfigError(
            f"rollout.environment.name: no environment {name!r}; known: {', '.join(environment_names())}. "
            f"A package registers one under the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    entry = installed[name]
    try:
        target = entry.load()
    except Exception as error:  # a broken plug-in names itself, not a traceback deep in importlib
        raise EnvironmentConfigError(
            f"environment {name!r}: loading entry point {entry.value!r} failed: {type(error).__name__}: {error}"
        ) from error
    environment = target if isinstance(target, Environment) else target() if callable(target) else target
    if not isinstance(environment, Environment):
        raise EnvironmentConfigError(
            f"environment {name!r}: entry point {entry.value!r} gave a {type(environment).__name__}; it must be a "
            "tip_ray.envs.base.Environment or a function with no arguments returning one"
        )
    return environment
