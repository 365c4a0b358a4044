"""A run whose name equals a secret from the environment (so it is masked in every config the run
writes) resumes: by hand (`--resume` with more steps) and by itself after a learner dies."""

from __future__ import annotations

import pytest
import ray
import yaml

from tests.conftest import live_actor
from tests.pipeline_doc import tiny_pipeline_doc
from tests.reliability.conftest import read_rows, write_pipeline
from tip_ray.checkpoint.redact import MASK

SECRET = "hf_abcdefghijklmnopqrstuvwxyz123456"


@pytest.mark.timeout(600)
def test_masked_secret_run_resumes_by_hand_and_by_itself(ray_local, tiny_pair, demo_prompts, tmp_path, monkeypatch, caplog):
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.supervisor import run_pipeline

    monkeypatch.setenv("HF_TOKEN", SECRET)
    run_dir = tmp_path / "run"

    def config(steps: int):
        doc = tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir, name=SECRET,
                                train={"steps": steps, "seed": 0, "stage_timeout_s": 240, "max_resumes": 1},
                                checkpoint={"every_steps": 2, "keep_last": 2, "export_hf": False})
        return load_pipeline(write_pipeline(tmp_path, doc))

    run_pipeline(config(2))
    for path in (run_dir / "config.resolved.yaml", run_dir / "checkpoints" / "step_2" / "config.resolved.yaml"):
        text = path.read_text()
        assert SECRET not in text and yaml.safe_load(text)["name"] == MASK, path

    killed = []

    def kill_learner_after_step_3(row: dict) -> None:
        if row["step"] == 3 and not killed:
            killed.append(3)
            ray.kill(live_actor(f"tip-ray/{SECRET}/", "learner-0"), no_restart=False)

    caplog.set_level("INFO", logger="tip_ray")
    summary = run_pipeline(config(4), resume="require", on_step=kill_learner_after_step_3)
    assert killed == [3]
    # By hand from step_2, then by itself from step_2 again after the learner died at step 3.
    assert summary.resumed_from == 2 and summary.resumes == 2 and summary.batches_redone == 1
    assert "automatic resume 1 of at most 1" in caplog.text
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert yaml.safe_load((run_dir / "checkpoints" / "step_4" / "config.resolved.yaml").read_text())["name"] == MASK
