"""The demo model source (`type: demo`): the demo's teacher or student, trained on first use and
cached by tip_ray.demo.bootstrap.

It sits in pipeline/, above both models/ and demo/, so that the model sources of models/ never
import the demo (the bootstrap itself builds on models/ and eval/).
"""

from __future__ import annotations

from tip_ray.config.models import DemoModel


def demo_pair(task: str = "arithmetic", build: bool = True, progress: bool = False):
    """The cached demo pair of `task` (arithmetic: the demo; prices: the tool-using pair), built first
    when missing and `build`; None when not cached and not `build`."""
    if task == "prices":
        from tip_ray.demo.tools_bootstrap import cached_tools_models as cached
        from tip_ray.demo.tools_bootstrap import ensure_tools_models as ensure
    else:
        from tip_ray.demo.bootstrap import cached_demo_models as cached
        from tip_ray.demo.bootstrap import ensure_demo_models as ensure
    return ensure(progress=progress) if build else cached()


def resolve_demo(source: DemoModel) -> str:
    """The folder of one of the two demo models, built first when not cached yet."""
    models = demo_pair(source.task)
    return str(models.teacher_path if source.role == "teacher" else models.student_path)


def demo_models_built(task: str = "arithmetic") -> bool:
    """Whether the demo models (of `task`) are cached already (checking so never starts the bootstrap)."""
    return demo_pair(task, build=False) is not None
