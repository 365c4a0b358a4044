"""Where shipped pipelines and configs/ are found, and that nothing else depends on the checkout:
includes resolve from the including file or the shipped configs/, sweeps write under the working
directory, and a shipped pipeline can be named from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tip_ray.config import shipped
from tip_ray.config.loader import ConfigError, load_pipeline
from tip_ray.config.shipped import locate_pipeline, shipped_configs, shipped_pipelines, shipped_root

CHECKOUT = Path(__file__).resolve().parents[2]


def pipeline_doc(**extra) -> dict:
    return {
        "name": "paths",
        "models": {"student": {"type": "local", "path": "/s"}, "teacher": {"type": "local", "path": "/t"}},
        "data": {"type": "jsonl", "path": "/d.jsonl"},
    } | extra


def test_a_checkout_ships_its_own_folders():
    assert not shipped.INSTALLED_ROOT.exists()  # this test runs from the source tree
    assert shipped_root() == CHECKOUT and shipped_configs() == CHECKOUT / "configs"
    assert {"demo", "smollm2_pruned", "sweeps/demo_rules", "paper/qwen3_8b_to_4b_soft_or_50"} <= set(shipped_pipelines())


@pytest.mark.parametrize("name", ["demo", "demo.yaml", "pipelines/demo.yaml"])
def test_a_shipped_pipeline_is_found_by_name_from_any_folder(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    assert locate_pipeline(name) == CHECKOUT / "pipelines" / "demo.yaml"
    assert load_pipeline(locate_pipeline(name)).name == "demo"  # its includes resolve too


def test_a_file_in_the_working_directory_comes_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "demo.yaml").write_text("name: mine\n")
    assert locate_pipeline("pipelines/demo.yaml") == Path("pipelines/demo.yaml")
    (tmp_path / "demo").mkdir()  # a folder is reported by the loader as what it is
    assert locate_pipeline("demo") == Path("demo")


def test_an_unknown_name_lists_the_shipped_pipelines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found .*shipped pipeline.*: .*demo, ") as info:
        locate_pipeline("nope.yaml")
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ConfigError, match="file not found"):
        locate_pipeline(str(tmp_path / "absent.yaml"))  # an absolute path is never looked up elsewhere


def test_includes_resolve_from_the_including_file_not_the_working_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "pieces").mkdir(parents=True)
    (project / "pieces" / "train.yaml").write_text("include: steps.yaml\nseed: 3\n")
    (project / "pieces" / "steps.yaml").write_text("steps: 9\n")  # next to the file that includes it
    doc = pipeline_doc(train={"include": "pieces/train.yaml"},
                       selection={"include": "configs/selection/soft_or_50.yaml"},
                       cluster={"include": "clusters/laptop.yaml"})  # configs/ may be left out
    (project / "p.yaml").write_text(yaml.safe_dump(doc))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_pipeline(project / "p.yaml")
    assert (config.train.steps, config.train.seed) == (9, 3)
    assert config.selection.rule.type == "soft_or" and config.selection.rule.ratio == 0.5


def test_an_installed_package_reads_its_shipped_copy(tmp_path, monkeypatch):
    installed = tmp_path / "site" / "tip_ray" / "_shipped"
    (installed / "configs" / "selection").mkdir(parents=True)
    (installed / "configs" / "selection" / "soft_or_50.yaml").write_text("rule: {type: soft_or, ratio: 0.25}\n")
    (installed / "pipelines").mkdir()
    (installed / "pipelines" / "tiny.yaml").write_text(yaml.safe_dump(
        pipeline_doc(selection={"include": "configs/selection/soft_or_50.yaml"})))
    monkeypatch.setattr(shipped, "INSTALLED_ROOT", installed)
    monkeypatch.chdir(tmp_path)
    assert shipped_root() == installed and shipped_pipelines() == ["tiny"]
    assert load_pipeline(locate_pipeline("tiny")).selection.rule.ratio == 0.25
    with pytest.raises(ConfigError, match="not found next to the file or in the shipped configs/"):
        load_pipeline(locate_pipeline(str(CHECKOUT / "pipelines" / "demo.yaml")))  # the checkout's configs/ is not used


def test_a_sweep_writes_under_the_working_directory(tmp_path, monkeypatch):
    from tip_ray.sweep.spec import load_sweep

    monkeypatch.chdir(tmp_path)
    loaded = load_sweep("sweeps/demo_rules")
    assert loaded.path == CHECKOUT / "pipelines" / "sweeps" / "demo_rules.yaml"
    assert loaded.report_dir == tmp_path / "docs" / "sweeps" / "demo_rules"
    assert loaded.runs_dir == tmp_path / "runs" / "sweeps" / "demo_rules"
