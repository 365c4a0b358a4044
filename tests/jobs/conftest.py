"""Fixtures of the cluster-job tests: a real token-auth Ray cluster on loopback, pipeline YAMLs
placed inside the project (so they travel with the job's upload), and the CLI as a process."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.jobs.ray_processes import LocalRayCluster

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 240


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def job_id(self) -> str:
        """`tip-ray submit` prints the job id alone on stdout's first line."""
        return self.stdout.splitlines()[0].strip()


def client_env(home: Path, **variables: str) -> dict[str, str]:
    """The environment of a CLI process: no inherited Ray settings, a home without a token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", **variables)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = CLI_TIMEOUT_S) -> CliResult:
    done = subprocess.run([sys.executable, "-m", "tip_ray.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def token_cluster():
    """A one-node Ray cluster with token authentication, stopped by its own process ids."""
    cluster = LocalRayCluster.start(head_cpus=2)
    yield cluster
    cluster.stop()


@pytest.fixture
def client_home(tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def shipped_pipeline():
    """Write a pipeline document inside the project, where `tip-ray submit` ships it from;
    the file is removed afterwards."""
    folder = REPO / "tests" / "jobs" / f"_submitted_{secrets.token_hex(4)}"
    folder.mkdir()

    def write(doc: dict, name: str = "pipeline.yaml") -> Path:
        path = folder / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    yield write
    shutil.rmtree(folder, ignore_errors=True)
