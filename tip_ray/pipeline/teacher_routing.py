"""Several teachers in one run: which teachers there are (resolved and checked against the
student's vocabulary before anything starts), the order a prompt batch is put in so that each
teacher's prompts sit together, and the scorer call of each part of a rollout shard.

A batch's prompts are stably sorted by teacher before they are split among the rollout workers;
a worker's shard that spans two teachers is cut at the boundary (RolloutBatch.prompt_slice, in a
small Ray task next to the data) and each part goes to a scorer of its own teacher. The parts,
concatenated in order, are the batch in its routed order, so the selector and learner see one
batch whose rows came from different teachers. With one teacher nothing here changes a call."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from tip_ray.config.loader import ConfigError
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.teacher import TeacherConfig
from tip_ray.config.teachers import teacher_config_of
from tip_ray.records import PromptBatch

SINGLE_TEACHER = "teacher"  # the name of a run's one teacher (models.teacher)


@dataclass(frozen=True)
class PreparedTeacher:
    name: str
    path: str  # resolved model folder
    config: TeacherConfig  # the `teacher:` section this teacher's scorers run with


def prepare_teachers(config: PipelineConfig, student_path: str,
                     resolve: Callable[[Any, str], str]) -> tuple[tuple[PreparedTeacher, ...], int]:
    """The run's teachers, in order (the first is the default), and the vocabulary size they are
    compared over; ConfigError naming the teacher and both folders when one does not share the
    student's tokenizer and vocabulary."""
    from tip_ray.models.loading import check_compatible

    if config.teachers is None:
        entries = [(SINGLE_TEACHER, "models.teacher", config.models.teacher, config.teacher)]
    else:
        entries = [(name, f"teachers.{name}.model", source.model, teacher_config_of(config.teacher, source))
                   for name, source in config.teachers.items()]
    teachers, vocab_size = [], None
    for name, where, source, section in entries:
        path = resolve(source, where)
        try:
            vocab_size = check_compatible(student_path, path)
        except ValueError as exc:
            key = "models" if config.teachers is None else f"teachers.{name}"
            raise ConfigError(f"{key}: {exc}") from None
        teachers.append(PreparedTeacher(name=name, path=path, config=section))
    return tuple(teachers), int(vocab_size)


def scorer_plan(prepared) -> list[tuple[int, PreparedTeacher | None, int]]:
    """(teacher index, teacher, replica) of every scorer to start, teacher by teacher; the teacher
    is None for a run of one teacher (its scorers read models.teacher and `teacher:` as before)."""
    if not prepared.config.teachers:
        return [(0, None, i) for i in range(prepared.config.teacher.num_scorers)]
    return [(t, teacher, i) for t, teacher in enumerate(prepared.teachers)
            for i in range(teacher.config.num_scorers)]


def teachers_line(prepared) -> str:
    """The run's teachers for a summary line: each with its folder, and how many rows it scores."""
    if not prepared.config.teachers:
        return f"teacher {prepared.teacher_path}"
    counts = [0] * len(prepared.teachers)
    for prompt in prepared.prompts:
        counts[prepared.teacher_of_row.get(prompt.row, 0)] += 1
    return "teachers " + ", ".join(f"{t.name} {t.path} ({n} prompts)" for t, n in zip(prepared.teachers, counts))


def route_batch(batch: PromptBatch, teacher_of_row: Mapping[int, int]) -> PromptBatch:
    """The batch with its prompts stably sorted by teacher and each prompt's teacher recorded."""
    teachers = [teacher_of_row.get(row, 0) for row in batch.prompt_rows]
    order = sorted(range(len(teachers)), key=lambda i: teachers[i])
    return replace(
        batch,
        prompt_ids=tuple(batch.prompt_ids[i] for i in order),
        answers=tuple(batch.answers[i] for i in order),
        prompt_rows=tuple(batch.prompt_rows[i] for i in order),
        teachers=tuple(teachers[i] for i in order),
    )


def teacher_parts(shard: PromptBatch) -> list[tuple[int, int, int]]:
    """(teacher, first prompt, end prompt) of each run of one teacher in a routed shard."""
    if not shard.teachers:
        return [(0, 0, len(shard.prompt_ids))]
    parts: list[tuple[int, int, int]] = []
    for i, teacher in enumerate(shard.teachers):
        if parts and parts[-1][0] == teacher:
            parts[-1] = (teacher, parts[-1][1], i + 1)
        else:
            parts.append((teacher, i, i + 1))
    return parts


def _slice_task():
    import ray

    @ray.remote(num_cpus=0)
    def prompt_slice(rollout, start: int, stop: int):
        return rollout.prompt_slice(start, stop)

    return prompt_slice


class ScorerRouter:
    """Sends each part of a rollout shard to a scorer of its teacher, round-robin per teacher.
    `scorer_teacher[i]` is the teacher of scorer i (empty: every scorer serves the one teacher)."""

    def __init__(self, scorers: Sequence[Any], scorer_teacher: Sequence[int]):
        self.scorers = list(scorers)
        self.teacher_of = list(scorer_teacher) or [0] * len(self.scorers)
        self.next = {t: 0 for t in self.teacher_of}
        self._prompt_slice = None

    def _scorer_of(self, teacher: int) -> int:
        mine = [i for i, t in enumerate(self.teacher_of) if t == teacher]
        index = mine[self.next[teacher] % len(mine)]
        self.next[teacher] += 1
        return index

    def score(self, shards: Sequence[PromptBatch], rollout_refs: Sequence[Any]):
        """(scored refs, teacher of each, indices of the scorers called), in batch order."""
        scored, teachers, used = [], [], []
        for shard, ref in zip(shards, rollout_refs):
            parts = teacher_parts(shard)
            for teacher, start, stop in parts:
                part_ref = ref
                if len(parts) > 1:
                    if self._prompt_slice is None:
                        self._prompt_slice = _slice_task()
                    part_ref = self._prompt_slice.remote(ref, start, stop)
                index = self._scorer_of(teacher)
                scored.append(self.scorers[index].score.remote(part_ref))
                teachers.append(teacher)
                used.append(index)
        return scored, tuple(teachers), used
