"""teachers: several frozen teachers by name, each its own model, scorer pool and backend. Each
prompt row names its teacher (data.teacher_field, optionally through data.teacher_table); a row
that names none goes to the first teacher listed. One `teachers:` section replaces
`models.teacher`; `teacher:` still holds the signal form, which every teacher shares (one batch
mixes their rows), and the defaults of what an entry does not set.
This module imports neither torch nor ray."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from tip_ray.config.base import Strict
from tip_ray.config.models import ModelSource
from tip_ray.config.teacher import TeacherBackend, TeacherConfig

if TYPE_CHECKING:
    from tip_ray.config.pipeline import PipelineConfig

TEACHER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TeacherSource(Strict):
    """One named teacher: its model, and (when they differ from `teacher:`) its own backend,
    scorer count and micro-batch."""

    model: ModelSource = Field(description="The teacher model (a model source, as models.teacher).")
    backend: TeacherBackend | None = Field(default=None, description="Its backend; default teacher.backend.")
    num_scorers: int | None = Field(default=None, gt=0, description="Its scorer replicas; default teacher.num_scorers.")
    micro_batch_size: int | None = Field(
        default=None, gt=0, description="Sequences per forward; default teacher.micro_batch_size.")


def teacher_config_of(shared: TeacherConfig, source: TeacherSource) -> TeacherConfig:
    """The `teacher:` section one named teacher runs with: the shared one, with the entry's own
    settings in place (validated again: a vllm or server backend still needs the top-k form)."""
    own = {key: getattr(source, key) for key in ("backend", "num_scorers", "micro_batch_size")
           if getattr(source, key) is not None}
    fields = {key: getattr(shared, key) for key in TeacherConfig.model_fields}
    return TeacherConfig.model_validate({**fields, **own})


def check_teachers(config: "PipelineConfig") -> None:
    """The checks that span models, teacher, teachers and data; ValueError names the keys."""
    teachers = config.teachers
    data = config.data
    if teachers is None:
        if config.models.teacher is None:
            raise ValueError("no teacher: set models.teacher, or name several under teachers:")
        for key in ("teacher_field", "teacher_table"):
            if getattr(data, key) is not None:
                raise ValueError(f"data.{key} routes rows among several teachers: it needs a teachers: "
                                 f"section (or remove it for the one teacher of models.teacher)")
        return
    if config.models.teacher is not None:
        raise ValueError("models.teacher and teachers: both name a teacher: keep one (teachers: for several)")
    if not teachers:
        raise ValueError("teachers: is empty: name at least one teacher, e.g. teachers: {main: {model: ...}}")
    for name in teachers:
        if not TEACHER_NAME.fullmatch(name):
            raise ValueError(f"teachers: name {name!r}: use letters, digits, '_', '.' or '-' (at most 64, "
                             f"starting with a letter or digit); it names metrics columns and actors")
    if len(teachers) > 1 and config.teacher.signal.type == "hidden":
        raise ValueError(
            "teacher.signal.type 'hidden' sends hidden states that only the teacher's own LM head turns into "
            f"log-probs; with several teachers ({', '.join(teachers)}) use teacher.signal.type 'full' or 'topk'")
    for name, source in teachers.items():
        try:
            teacher_config_of(config.teacher, source)
        except ValidationError as exc:
            raise ValueError(f"teachers.{name}: {exc.errors()[0]['msg']}") from None
    if data.teacher_table is not None:
        if data.teacher_field is None:
            raise ValueError("data.teacher_table maps values of data.teacher_field to teachers: set "
                             "data.teacher_field to the row field that holds them (e.g. source)")
        unknown = sorted({t for t in data.teacher_table.values() if t not in teachers})
        if unknown:
            raise ValueError(f"data.teacher_table names unknown teacher(s) {', '.join(map(repr, unknown))}; "
                             f"the teachers are {', '.join(teachers)}")
