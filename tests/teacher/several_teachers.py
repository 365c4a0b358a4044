"""Test support for runs of several teachers: a second tiny teacher sharing the tiny pair's
tokenizer but not its weights, prompts tagged with a data source, and the pipeline document."""

from __future__ import annotations

import json
from pathlib import Path

from tests.pipeline_doc import tiny_pipeline_doc

SOURCES = ("short", "long")  # rows alternate between the two data sources
TABLE = {"short": "first", "long": "second"}


def second_teacher(folder: Path) -> Path:
    """A teacher of the same shape and tokenizer as the tiny pair's, other random weights."""
    from tip_ray.models.tiny import save_tiny_pair
    from tip_ray.tasks.arithmetic import ALPHABET

    return save_tiny_pair(folder, alphabet=ALPHABET, seed=11).teacher_path


def tagged_prompts(source: Path, out: Path) -> Path:
    """`source`'s rows with a `source` field, alternating SOURCES."""
    lines = source.read_text().splitlines()
    out.write_text("".join(json.dumps({**json.loads(line), "source": SOURCES[i % 2]}) + "\n"
                           for i, line in enumerate(lines)))
    return out


def two_teacher_doc(pair, second: Path, prompts: Path, run_dir: Path, **sections) -> dict:
    doc = tiny_pipeline_doc(pair, prompts, run_dir, **sections)
    doc["models"] = {k: v for k, v in doc["models"].items() if k != "teacher"}
    doc["teachers"] = {"first": {"model": {"type": "local", "path": str(pair.teacher_path)}},
                       "second": {"model": {"type": "local", "path": str(second)}}}
    doc["teacher"] = {"signal": {"type": "full"}}
    doc["data"] = {**doc["data"], "teacher_field": "source", "teacher_table": dict(TABLE)}
    return doc
