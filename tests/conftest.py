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
    from tip_ray.tasks.arithmetic import ALPHABET
    from tip_ray.models.tiny import save_tiny_pair

    return save_tiny_pair(tmp_path_factory.mktemp("tiny"), alphabet=ALPHABET, seed=0)


@pytest.fixture(scope="session")
def demo_prompts(tmp_path_factory) -> Path:
    from tip_ray.tasks.arithmetic import write_jsonl

    return write_jsonl(tmp_path_factory.mktemp("data") / "prompts.jsonl", n=256, seed=7)


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


def live_actor(prefix: str, suffix: str):
    """The live stage actor named `<prefix>...<suffix>` (a run names its actors
    `tip-ray/<run name>/<id>/<role>-<i>`; one run of a name at a time in a session)."""
    import ray

    names = [n for n in ray.util.list_named_actors() if n.startswith(prefix) and n.endswith(suffix)]
    assert names, f"no actor {prefix}*{suffix} among {ray.util.list_named_actors()}"
    return ray.get_actor(names[-1])
