"""The base of every config model: unknown keys refused, values frozen, and every number checked
for its meaning (finite, in range, never a boolean) before a field validator sees it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from tip_ray.config.numbers import check_numbers


class Strict(BaseModel):
    # No NaN or infinity in any float; numbers_mean_something guards every numeric field.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def numbers_mean_something(cls, data):
        return check_numbers(cls, data)
