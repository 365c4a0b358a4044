"""Every YAML the project ships is loaded and validated, so a stale key fails CI.

A pipeline may name a tool environment that its user installs (a package's
``tip_ray.environments`` entry point): such names are registered here by a small package
installed the way pip leaves one, and `tip-ray validate` is run on the agentic paper pipeline
with and without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tip_ray.config import load_pipeline, load_yaml_tree
from tip_ray.config.cluster import ClusterConfig
from tip_ray.config.models import ModelsConfig
from tip_ray.config.pipeline import PipelineConfig
from tip_ray.config.selection import SelectionConfig

REPO = Path(__file__).resolve().parents[2]
PIPELINES = sorted((REPO / "pipelines").rglob("*.yaml"))
PIECES = sorted((REPO / "configs").rglob("*.yaml"))
DEPLOY = sorted((REPO / "deploy").rglob("*.yaml"))

# Environments the shipped pipelines name but leave to their users to install.
USER_ENVIRONMENTS = ("travel_planning",)
AGENTIC_PAPER = REPO / "pipelines" / "paper" / "agentic_qwen3_14b_to_1p7b.yaml"


def install_user_environments(folder: Path) -> Path:
    """A package registering USER_ENVIRONMENTS (a module and its .dist-info), in `folder`."""
    (folder / "user_envs.py").write_text(
        "from tip_ray.envs.base import Environment\n\n"
        "def make():\n    return Environment(name='user', tools={'echo': lambda text: text})\n"
    )
    info = folder / "user_envs-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: user-envs\nVersion: 0.1\n")
    entries = "".join(f"{name} = user_envs:make\n" for name in USER_ENVIRONMENTS)
    (info / "entry_points.txt").write_text(f"[tip_ray.environments]\n{entries}")
    return folder


@pytest.fixture(scope="module")
def user_environments(tmp_path_factory):
    folder = install_user_environments(tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        yield folder


# configs/<folder>/ holds pieces of one section of a pipeline.
PIECE_MODELS = {"models": ModelsConfig, "selection": SelectionConfig, "clusters": ClusterConfig}


def test_the_project_ships_yaml_files():
    assert PIPELINES, "pipelines/ holds no YAML"
    assert PIECES, "configs/ holds no YAML"


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: str(p.relative_to(REPO)))
def test_pipeline_validates(path, user_environments):
    tree = load_yaml_tree(path)
    if "sweep" in tree:  # a sweep file: its base pipeline is validated through the sweep loader
        from tip_ray.sweep.spec import load_sweep

        load_sweep(path)
        return
    config = load_pipeline(path)
    assert isinstance(config, PipelineConfig)


def _validate(pipeline: Path, *args: str, site: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "tip_ray.cli", "validate", str(pipeline), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_the_agentic_paper_pipeline_validates_once_its_environment_is_installed(user_environments, tmp_path):
    """Offline `tip-ray validate`: without the user's package the environment name is refused with
    the entry-point group to register it under; with it (and a task file) only the hub models are
    left unchecked."""
    tasks = tmp_path / "train.jsonl"
    tasks.write_text('{"prompt": "Plan two days in Lyon under 300 EUR."}\n')
    missing = _validate(AGENTIC_PAPER, "--set", f"data.path={tasks}")
    assert missing.returncode != 0
    assert "no environment 'travel_planning'" in missing.stderr and "'tip_ray.environments'" in missing.stderr
    done = _validate(AGENTIC_PAPER, "--set", f"data.path={tasks}", site=user_environments)
    assert done.returncode == 0, done.stderr
    assert "valid pipeline 'paper-agentic-qwen3-14b-to-1p7b-q3-only-20'" in done.stdout
    config = load_pipeline(AGENTIC_PAPER)
    environment = config.rollout.environment
    assert (environment.type, environment.name, environment.max_turns, environment.max_tool_response_tokens) == (
        "tools", "travel_planning", 50, 1024)
    assert (config.selection.rule.type, config.selection.rule.ratio) == ("q3_only", 0.2)
    assert (config.models.student.name, config.models.teacher.name) == ("Qwen/Qwen3-1.7B", "Qwen/Qwen3-14B")


@pytest.mark.parametrize("path", PIECES, ids=lambda p: str(p.relative_to(REPO)))
def test_config_piece_validates(path):
    folder = path.relative_to(REPO / "configs").parts[0]
    assert folder in PIECE_MODELS, f"{path}: configs/{folder}/ is not a known kind of piece"
    PIECE_MODELS[folder].model_validate(load_yaml_tree(path))


@pytest.mark.parametrize("path", DEPLOY, ids=lambda p: str(p.relative_to(REPO)))
def test_deploy_yaml_parses(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(d is None or isinstance(d, dict) for d in docs)
