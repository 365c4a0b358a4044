"""The run folder: an existing folder's permissions are reported, never changed (also when the
run is refused as busy); a folder the run creates is user-only; a run name cannot put the run
folder outside the runs folder; the resolved config stays valid YAML whatever is masked, and a
checkpoint whose config had a value masked still resumes."""

from __future__ import annotations

import logging
import os
import stat

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.checkpoint.redact import MASK

SECRET = "hf_abcdefghijklmnopqrstuvwxyz123456"


def config_for(tmp_path, doc):
    from tip_ray.config import load_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_pipeline(path)


def test_existing_folder_keeps_its_permissions_even_when_the_run_is_refused(tiny_pair, demo_prompts, tmp_path, caplog):
    from tip_ray.checkpoint import RunFolderBusy, RunLock
    from tip_ray.pipeline.run_folder import secure_run_dir
    from tip_ray.pipeline.supervisor import run_pipeline

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    caplog.set_level(logging.WARNING, logger="tip_ray")
    secure_run_dir(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert "already exists with permissions 0o1777" in caplog.text
    assert "others can read and write it" in caplog.text and "plant a checkpoint" in caplog.text
    # A run refused because another driver holds the folder changes nothing either.
    config = config_for(tmp_path, tiny_pipeline_doc(tiny_pair, demo_prompts, shared))
    with RunLock(shared):
        with pytest.raises(RunFolderBusy):
            run_pipeline(config)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert not (shared / "config.resolved.yaml").exists()


def test_private_existing_folder_is_not_reported_and_a_new_one_is_user_only(tmp_path, caplog):
    from tip_ray.pipeline.run_folder import secure_run_dir

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    caplog.set_level(logging.WARNING, logger="tip_ray")
    secure_run_dir(private)
    assert caplog.text == ""
    old = os.umask(0)
    try:
        secure_run_dir(tmp_path / "runs" / "new")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "runs" / "new").stat().st_mode) == 0o700


@pytest.mark.parametrize("name", ["../escape", "../../etc", "/etc", "a/b", "..", ".", "a\\b", " x"])
def test_run_name_cannot_leave_the_runs_folder(name, tiny_pair, demo_prompts, tmp_path, monkeypatch):
    from tip_ray.config.loader import ConfigError
    from tip_ray.pipeline.prepare import run_dir_for

    monkeypatch.chdir(tmp_path)
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path, name=name)
    doc["logging"]["run_dir"] = "runs/{name}"
    config = config_for(tmp_path, doc)
    with pytest.raises(ConfigError, match=r"name: .* cannot name a run folder.*one plain folder name"):
        run_dir_for(config)
    assert run_dir_for(config, str(tmp_path / "given")) == tmp_path / "given"  # --run-dir is the user's choice


def test_cli_refuses_an_escaping_run_name_before_writing(tiny_pair, demo_prompts, tmp_path, monkeypatch, capsys):
    from tip_ray.cli import main

    monkeypatch.chdir(tmp_path)
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path)
    doc["logging"]["run_dir"] = "work/runs/{name}"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["run", str(tmp_path / "p.yaml"), "--set", "name=../../escaped"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("tip-ray: error: name: '../../escaped' cannot name a run folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder made anywhere


def test_resolved_config_stays_valid_yaml_whatever_is_masked(monkeypatch, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.checkpoint.redact import scrub_file
    from tip_ray.pipeline.prepare import write_resolved_config

    monkeypatch.setenv("HF_TOKEN", SECRET)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # The whole value, the start of a value, a list item: each would be an alias if left bare.
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir, name=SECRET)
    doc["data"]["answer_field"] = f"{SECRET}-answer"
    written = yaml.safe_load(write_resolved_config(config_for(tmp_path, doc), run_dir).read_text())
    assert written["name"] == MASK and written["data"]["answer_field"] == f"{MASK}-answer"
    # A file written unmasked (by an older version) is scrubbed into valid YAML too.
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text(f"name: {SECRET}\nitems:\n- {SECRET}\n- kept\npath: /a/{SECRET}/b\n")
    assert scrub_file(legacy)
    assert yaml.safe_load(legacy.read_text()) == {"name": MASK, "items": [MASK, "kept"], "path": f"/a/{MASK}/b"}


def test_masked_values_never_block_a_resume():
    from tip_ray.checkpoint.resume import config_changes, load_saved_config

    # What the older versions wrote: bare masks, which YAML reads as aliases.
    legacy = f"name: {MASK}\ndata:\n  split: {MASK}\n  path: /d/{MASK}.jsonl\ntrain:\n  seed: 0\n"
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(legacy)
    assert load_saved_config(legacy)["data"] == {"split": MASK, "path": f"/d/{MASK}.jsonl"}
    current = {"name": SECRET, "data": {"split": SECRET, "path": f"/d/{SECRET}.jsonl"}, "train": {"seed": 0}}
    assert config_changes(legacy, current) == ([], [])
    # A masked value still cannot hide a change in what is not masked.
    blocking, _ = config_changes(legacy, {**current, "data": {**current["data"], "split": "x"}, "train": {"seed": 1}})
    assert blocking == ["train.seed: 0 -> 1"]
    blocking, _ = config_changes(legacy, {**current, "data": {**current["data"], "path": "/other/x.jsonl"}})
    assert blocking == []  # data.path may move
    blocking, _ = config_changes(f"data:\n  split: '{MASK}-a'\n", {"data": {"split": f"{SECRET}-b"}})
    assert blocking == [f"data.split: '{MASK}-a' -> '{SECRET}-b'"]
