"""Every setting a user can write is documented where the schema defines it."""

from __future__ import annotations

import typing

from pydantic import BaseModel

from tip_ray.config.pipeline import PipelineConfig


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def test_every_value_field_has_a_description():
    """Sections are documented by their class docstring and strategies by `type`'s values; every
    other field carries a description."""
    seen: set[type[BaseModel]] = set()
    missing: list[str] = []

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            nested = _models_in(field.annotation)
            if not nested and name != "type" and not field.description:
                missing.append(f"{model.__name__}.{name}")
            for sub in nested:
                walk(sub)

    walk(PipelineConfig)
    assert len(seen) > 30
    assert missing == []
