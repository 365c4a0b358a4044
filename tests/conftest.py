"""Shared fixtures: tiny model pairs built from a config (no download), prompt files, and a real
local Ray cluster that the tests start themselves and shut down at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """A random-weight teacher/student pair over the demo task's characters."""
    from tip_ray.demo.task import ALPHABET
    from tip_ray.models.tiny import save_tiny_pair

    return save_tiny_pair(tmp_path_factory.mktemp("tiny"), alphabet=ALPHABET, seed=0)


@pytest.fixture(scope="session")
def demo_prompts(tmp_path_factory) -> Path:
    from tip_ray.demo.task import write_jsonl

    return write_jsonl(tmp_path_factory.mktemp("data") / "prompts.jsonl", n=256, seed=7)


def tiny_pipeline_doc(pair, prompts: Path, run_dir: Path, **sections) -> dict:
    """A small, fast pipeline over the tiny pair; `sections` override top-level keys."""
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


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster for the whole session (never joins another one)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # A local cluster started by the tests needs no token; an inherited mode would demand one.
    os.environ.pop("RAY_AUTH_MODE", None)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()
