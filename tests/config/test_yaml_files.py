"""Every YAML the project ships is loaded and validated, so a stale key fails CI."""

from __future__ import annotations

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

# configs/<folder>/ holds pieces of one section of a pipeline.
PIECE_MODELS = {"models": ModelsConfig, "selection": SelectionConfig, "clusters": ClusterConfig}


def test_the_project_ships_yaml_files():
    assert PIPELINES, "pipelines/ holds no YAML"
    assert PIECES, "configs/ holds no YAML"


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: str(p.relative_to(REPO)))
def test_pipeline_validates(path):
    tree = load_yaml_tree(path)
    if "sweep" in tree:  # a sweep file: its base pipeline is validated through the sweep loader
        from tip_ray.sweep.spec import load_sweep

        load_sweep(path)
        return
    config = load_pipeline(path)
    assert isinstance(config, PipelineConfig)


@pytest.mark.parametrize("path", PIECES, ids=lambda p: str(p.relative_to(REPO)))
def test_config_piece_validates(path):
    folder = path.relative_to(REPO / "configs").parts[0]
    assert folder in PIECE_MODELS, f"{path}: configs/{folder}/ is not a known kind of piece"
    PIECE_MODELS[folder].model_validate(load_yaml_tree(path))


@pytest.mark.parametrize("path", DEPLOY, ids=lambda p: str(p.relative_to(REPO)))
def test_deploy_yaml_parses(path):
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(d is None or isinstance(d, dict) for d in docs)
