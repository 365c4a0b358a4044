"""Numbers in the configuration must mean something: finite, of the right type, in range.

Three rules hold for every numeric field of every config model, from one validator that the
schema's base class runs on each model's input (so a new field is covered without a word):

- no booleans where a number is meant (YAML reads `steps: true` as a number-like value that
  pydantic would quietly turn into 1);
- integers fit `MAX_CONFIG_INT` (steps, tokens, sizes, seeds; `max_new_tokens: 1e20` is not a
  length anything can allocate);
- no NaN or infinity in a float (the base class sets pydantic's `allow_inf_nan=False`).

Ranges that depend on a field's meaning (lr > 0, top_p in (0, 1], betas in [0, 1)) are the
field's own constraints; types for the shared ones are defined here.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field

from tip_ray.errors import TipRayError

MAX_CONFIG_INT = 2**31 - 1

# AdamW's moment decay rates: beta = 1 never forgets, beta >= 1 or < 0 diverges.
AdamBeta = Annotated[float, Field(ge=0.0, lt=1.0)]


def number_kinds(annotation: Any) -> set[type]:
    """The scalar types among int, float and bool that an annotation admits anywhere in it
    (through Optional, Union, Annotated, Literal, tuple, list and dict values)."""
    if annotation in (int, float, bool):
        return {annotation}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return {type(arg) for arg in args if type(arg) in (int, float, bool)}
    if origin is dict:
        return number_kinds(args[1]) if len(args) == 2 else set()
    if origin is Annotated:
        return number_kinds(args[0])
    if origin in (Union, types.UnionType, tuple, list, set, frozenset):
        kinds: set[type] = set()
        for arg in args:
            if arg is not Ellipsis:
                kinds |= number_kinds(arg)
        return kinds
    return set()


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


class FieldValueError(TipRayError, ValueError):
    """A bad value of one field, raised by a model-level check: `field` extends the error's
    location (the loader's error formatter reads it), so the message names the key."""

    _fields = ("field",)


def check_number(annotation: Any, value: Any) -> str | None:
    """Why `value` cannot be a value of this numeric field, or None when it can (or when the
    field is not numeric: other checks are pydantic's)."""
    kinds = number_kinds(annotation)
    if not kinds - {bool}:
        return None
    for leaf in _leaves(value):
        if isinstance(leaf, bool) and bool not in kinds:
            return f"expected a number, got the boolean {str(leaf).lower()}"
        if int in kinds and float not in kinds and isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            if abs(leaf) > MAX_CONFIG_INT:
                return f"{leaf!r} is out of range: at most {MAX_CONFIG_INT}"
    return None


def check_numbers(model: type[BaseModel], data: Any) -> Any:
    """A model's raw input unchanged, or FieldValueError naming the first field it breaks."""
    if isinstance(data, dict):
        for name, value in data.items():
            field = model.model_fields.get(name) if isinstance(name, str) else None
            problem = check_number(field.annotation, value) if field is not None else None
            if problem:
                raise FieldValueError(problem, field=name)
    return data
