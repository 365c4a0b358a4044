"""Fixtures of the reliability tests: one small deterministic run shape shared by every test, a
run of it that nothing interrupts (the reference the faulted runs must reproduce), and the CLI
as a separate process with its own embedded Ray in its own temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc

REPO = Path(__file__).resolve().parents[2]
STEPS = 8
CHECKPOINT_EVERY = 2
START_TIMEOUT_S = 480  # Ray start, actor start and 4 steps on a busy 2-core machine
RESUME_TIMEOUT_S = 600
LAG = 1  # batch b is sampled with policy version b - 1: a checkpoint holds an older version too
# Compared between runs: what a step trained on and what it computed (not timings, not counters).
SAME_FIELDS = ("step", "batch_id", "prompt_rows", "loss", "grad_norm", "lr", "skipped",
               "selected_tokens", "response_tokens", "policy_lag")


def reliability_doc(pair, prompts: Path, run_dir: Path, **sections) -> dict:
    """The shared run: 8 steps, a checkpoint every 2, policy lag 1 (two batches in flight), fixed
    thread counts (2 cores), so that two runs of it compute bit-identical numbers."""
    base = {
        "train": {"steps": STEPS, "seed": 0, "stage_timeout_s": 240, "max_consecutive_bad_steps": 3,
                  "max_policy_lag": LAG},
        "checkpoint": {"every_steps": CHECKPOINT_EVERY, "keep_last": 2, "export_hf": True},
        "cluster": {"address": "local", "num_cpus": 2},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return tiny_pipeline_doc(pair, prompts, run_dir, **base)


def write_pipeline(folder: Path, doc: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read_rows(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: r[k] for k in SAME_FIELDS} for r in rows]


@pytest.fixture(scope="session")
def reference_run(ray_local, tiny_pair, demo_prompts, tmp_path_factory):
    """The shared run, never interrupted (in this process, on the session's Ray)."""
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.supervisor import run_pipeline

    folder = tmp_path_factory.mktemp("reference")
    doc = reliability_doc(tiny_pair, demo_prompts, folder / "run")
    summary = run_pipeline(load_pipeline(write_pipeline(folder, doc)))
    return summary, read_rows(folder / "run")


def cli_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    """A CLI process's environment: no inherited Ray settings, Ray's files under `ray_tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(ray_tmp), PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO), **extra)
    return env


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "tip_ray.cli", *args], env=env, cwd=REPO,
                            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def run_cli(args: list[str], env: dict[str, str], log: Path, timeout_s: float) -> tuple[int, str]:
    """`tip-ray ARGS` to its end (killed if it outlasts `timeout_s`): (exit code, its output)."""
    proc = start_cli(args, env, log)
    try:
        code = proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, log.read_text()


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Poll `ready` until it holds; fail, naming `what`, if the CLI process ends first or
    `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)


def checkpoint_manifest(run_dir: Path, step: int) -> Path:
    """The file a checkpoint writes last: once it exists, the checkpoint is complete."""
    return run_dir / "checkpoints" / f"step_{step}" / "manifest.json"


@pytest.fixture
def ray_tmp():
    """A short private temp dir for an embedded Ray (socket paths must stay under 108 bytes);
    any process still running from it at the end is killed by its pid."""
    from tests.reliability.processes import kill_processes_under, wait_gone

    folder = Path(tempfile.mkdtemp(prefix="trr", dir="/tmp"))
    yield folder
    leftovers = wait_gone(folder, 30)
    kill_processes_under(folder)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    assert not leftovers, f"processes of the run's Ray were still running: {leftovers}"
