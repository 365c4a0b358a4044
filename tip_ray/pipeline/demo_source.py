"""The demo model source (`type: demo`): the demo's teacher or student, trained on first use and
cached by tip_ray.demo.bootstrap.

It sits in pipeline/, above both models/ and demo/, so that the model sources of models/ never
import the demo (the bootstrap itself builds on models/ and eval/).
"""

from __future__ import annotations

from tip_ray.config.models import DemoModel


def resolve_demo(source: DemoModel) -> str:
    """The folder of one of the two demo models, built first when not cached yet."""
    from tip_ray.demo.bootstrap import ensure_demo_models

    models = ensure_demo_models()
    return str(models.teacher_path if source.role == "teacher" else models.student_path)


def demo_models_built() -> bool:
    """Whether the demo models are cached already (checking so never starts the bootstrap)."""
    from tip_ray.demo.bootstrap import cached_demo_models

    return cached_demo_models() is not None
