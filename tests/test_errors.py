"""Every error tip-ray raises on purpose shares one base and survives pickling (Ray ships raised
errors between processes through pickle)."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import pytest

import tip_ray
from tip_ray.errors import TipRayError


def _project_error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    # Every module, the vLLM ones included: they import vllm only inside functions
    # (tests/test_structure.py), so they load without it.
    for info in pkgutil.walk_packages(tip_ray.__path__, "tip_ray."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
            ):
                found[f"{info.name}.{value.__name__}"] = value
    return [found[name] for name in sorted(found)]


PROJECT_ERRORS = _project_error_classes()


def test_the_search_reaches_the_vllm_modules():
    names = {f"{cls.__module__}.{cls.__name__}" for cls in PROJECT_ERRORS}
    assert {"tip_ray.vllm_engine.engine.VLLMEngineError", "tip_ray.vllm_engine.tokenizer_check.TokenizerMismatchError"} <= names


@pytest.mark.parametrize("cls", PROJECT_ERRORS, ids=lambda c: c.__name__)
def test_every_project_error_derives_from_the_base(cls):
    assert issubclass(cls, TipRayError), f"{cls.__module__}.{cls.__name__} is not a TipRayError"


def test_a_stage_death_pickles_with_its_stage():
    from tip_ray.pipeline.faults import StageDied

    died = StageDied.of("teacher", RuntimeError("out of memory"))
    back = pickle.loads(pickle.dumps(died))
    assert type(back) is StageDied
    assert back.stage == "teacher"
    assert str(back) == "stage 'teacher' died: out of memory"


def test_unknown_fields_are_refused():
    with pytest.raises(TypeError, match="no field"):
        TipRayError("x", colour="red")
