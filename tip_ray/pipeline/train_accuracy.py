"""Accuracy of training responses, for tasks that have a cheap exact grader."""

from __future__ import annotations

from typing import Callable

from tip_ray.config.pipeline import PipelineConfig
from tip_ray.records import PromptBatch


def train_accuracy_fn(config: PipelineConfig) -> Callable[[str, str], bool] | None:
    """Cheap exact grader of training responses; only generated tasks have one."""
    if config.data.type == "demo":
        from tip_ray.tasks.registry import get_task

        return get_task(config.data.task).grade
    return None


def batch_accuracy(rollouts, batch: PromptBatch, grade) -> float | None:
    if grade is None:
        return None
    correct = total = 0
    for shard in rollouts:
        offset = batch.prompt_rows.index(shard.prompt_rows[0]) if shard.prompt_rows else 0
        for text, pidx in zip(shard.response_texts, shard.prompt_index.tolist()):
            answer = batch.answers[offset + pidx]
            if answer is None:
                continue
            total += 1
            correct += bool(grade(text, answer))
    return correct / total if total else None
