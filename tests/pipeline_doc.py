"""The pipeline document of a small, fast run over a tiny teacher/student pair (test support,
not part of the package: benchmarks/ and scripts/ import it with the repository on sys.path).

Tests, benchmarks and the GPU check all start from this one document and override only what
they measure or need, so a new required setting is added in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tip_ray.models.tiny import TinyPair


def tiny_pipeline_doc(pair: TinyPair, prompts: Path, run_dir: Path, **sections) -> dict:
    """A small, fast pipeline over the tiny pair; `sections` override top-level keys.

    A dict section is merged one level deep (its keys replace the default's keys of the same
    name, whole); any other value replaces the section.
    """
    doc = {
        "name": "tiny",
        "models": {
            "student": {"type": "local", "path": str(pair.student_path)},
            "teacher": {"type": "local", "path": str(pair.teacher_path)},
            "dtype": "float32",
        },
        "data": {"type": "jsonl", "path": str(prompts), "chat_template": "never"},
        "rollout": {
            "num_workers": 1,
            "prompts_per_step": 4,
            "samples_per_prompt": 2,
            "sampling": {"temperature": 1.0, "max_new_tokens": 24},
        },
        "teacher": {"signal": {"type": "hidden"}},
        "selection": {"rule": {"type": "soft_or", "ratio": 0.5}},
        "learner": {"num_ranks": 1, "micro_batch_size": 4, "optimizer": {"lr": 1e-3, "warmup_steps": 0}},
        "train": {"steps": 3, "seed": 0, "stage_timeout_s": 120},
        "cluster": {"address": "local"},
        "logging": {"run_dir": str(run_dir), "progress": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc
