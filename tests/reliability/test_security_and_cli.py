"""Secrets stay in the environment, run folders are private, and `tip-ray run` refuses to resume
what it cannot resume, before Ray or any actor starts."""

from __future__ import annotations

import logging
import os
import shutil
import stat

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tests.reliability.conftest import reliability_doc, write_pipeline
from tip_ray.checkpoint.redact import MASK, RedactingFilter, redact, secret_values


SECRETS = {"WANDB_API_KEY": "wandb-0123456789abcdef", "HF_TOKEN": "hf_abcdefghijklmnop",
           "MY_SERVICE_PASSWORD": "hunter2hunter2", "SHORT_TOKEN": "abc"}


def test_redaction_masks_every_secret_value():
    text = "key=wandb-0123456789abcdef url=https://u:hf_abcdefghijklmnop@hub pw=hunter2hunter2 abc"
    masked = redact(text, SECRETS)
    assert masked == f"key={MASK} url=https://u:{MASK}@hub pw={MASK} abc"
    assert secret_values({"SHORT_TOKEN": "abcdefgh"}) == ["abcdefgh"] and secret_values({"SHORT_TOKEN": "abc"}) == []
    assert secret_values({"PATH": "/usr/local/bin:/usr/bin"}) == []


def test_log_lines_are_masked(monkeypatch, caplog):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    logger = logging.getLogger("tip_ray.test_redaction")
    handler_filter = RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO, logger="tip_ray.test_redaction"):
            logger.warning("could not reach %s with token %s", "https://hub", SECRETS["HF_TOKEN"])
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert SECRETS["HF_TOKEN"] not in caplog.text and f"with token {MASK}" in caplog.text


def test_run_folder_is_private_and_resolved_config_masked(monkeypatch, tmp_path):
    from tip_ray.pipeline.run_folder import secure_run_dir

    monkeypatch.setenv("HF_TOKEN", SECRETS["HF_TOKEN"])
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    (run_dir / "config.resolved.yaml").write_text(f"name: leak-{SECRETS['HF_TOKEN']}\n")
    secure_run_dir(run_dir)
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o755  # an existing folder is reported, not changed
    assert (run_dir / "config.resolved.yaml").read_text() == f"name: leak-{MASK}\n"
    secure_run_dir(tmp_path / "new")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_resolved_config_is_masked_as_written_and_only_by_the_lock_holder(monkeypatch, tiny_pair, demo_prompts, tmp_path):
    import yaml

    from tip_ray.checkpoint import RunFolderBusy, RunLock
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.prepare import write_resolved_config
    from tip_ray.pipeline.supervisor import run_pipeline

    monkeypatch.setenv("HF_TOKEN", SECRETS["HF_TOKEN"])
    run_dir = tmp_path / "run"
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir, name=f"leak-{SECRETS['HF_TOKEN']}")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    config = load_pipeline(tmp_path / "p.yaml")
    run_dir.mkdir()
    written = write_resolved_config(config, run_dir)
    assert SECRETS["HF_TOKEN"] not in written.read_text() and f"leak-{MASK}" in written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    # A second driver on a folder another run holds is refused and leaves that run's file alone.
    written.write_text("the running run's config\n")
    with RunLock(run_dir):
        with pytest.raises(RunFolderBusy):
            run_pipeline(config)
    assert written.read_text() == "the running run's config\n"


def run_cli(args, capsys) -> tuple[int, str]:
    import ray

    from tip_ray.cli import main

    was_running = ray.is_initialized()
    code = main(args)
    assert ray.is_initialized() == was_running, "the refused run started Ray"
    return code, capsys.readouterr().err


def test_resume_without_checkpoint_is_refused(tiny_pair, demo_prompts, tmp_path, capsys):
    pipeline = write_pipeline(tmp_path, reliability_doc(tiny_pair, demo_prompts, tmp_path / "run"))
    code, err = run_cli(["run", str(pipeline), "--resume"], capsys)
    assert code == 2 and "--resume: no complete checkpoint under" in err and "run without --resume" in err


def test_resume_with_a_changed_data_order_is_refused(reference_run, tiny_pair, demo_prompts, tmp_path, capsys):
    summary, _ = reference_run
    run_dir = tmp_path / "run"
    shutil.copytree(summary.run_dir, run_dir)
    (run_dir / ".lock").unlink(missing_ok=True)
    doc = reliability_doc(tiny_pair, demo_prompts, run_dir, train={"seed": 1})
    code, err = run_cli(["run", str(write_pipeline(tmp_path, doc))], capsys)
    assert code == 2 and "cannot resume from" in err and "train.seed: 0 -> 1" in err
    assert "another --run-dir" in err


def test_reference_run_folder(reference_run):
    """The uninterrupted run: private folders, the last K checkpoints, each loadable by
    from_pretrained, and its metrics."""
    from transformers import AutoModelForCausalLM

    from tip_ray.checkpoint import read_state, verify_manifest

    summary, rows = reference_run
    run_dir = summary.run_dir
    for folder in (run_dir, run_dir / "checkpoints", *sorted((run_dir / "checkpoints").iterdir())):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, folder
    steps = sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*"))
    assert steps == [6, 8]
    final = run_dir / "checkpoints" / "step_8"
    assert verify_manifest(final) == 8
    state = read_state(final)
    assert state.step == 8 and state.learner_step == 8 and state.in_flight == 0 and state.policy_versions == ()
    earlier = read_state(run_dir / "checkpoints" / "step_6")
    # Batches 6 and 7 were in flight, sampled with versions 5 and 6: version 5 is saved with it.
    assert earlier.in_flight == 2 and earlier.policy_versions == (5,)
    assert (run_dir / "checkpoints" / "step_6" / "policy" / "version_5.safetensors").is_file()
    assert (state.data_epoch, state.data_index) == (0, 8 * 4)
    model = AutoModelForCausalLM.from_pretrained(final / "hf")
    assert sum(p.numel() for p in model.parameters()) > 0
    assert [r["step"] for r in rows] == list(range(1, 9)) and summary.resumes == 0
    saved = yaml.safe_load((final / "config.resolved.yaml").read_text())
    assert saved["checkpoint"]["every_steps"] == 2
