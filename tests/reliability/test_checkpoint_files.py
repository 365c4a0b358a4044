"""Checkpoint folders on disk, without Ray: the manifest catches every kind of damage, a crash
mid-write leaves the previous checkpoints intact, the newest damaged one is set aside for the
previous one with a warning, logs go back to a checkpoint's step, and one driver per folder."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from tip_ray.checkpoint import (
    CheckpointDamaged,
    CheckpointStore,
    RunFolderBusy,
    RunLock,
    TrainerState,
    config_changes,
    restore_logs,
    save_logs,
    verify_manifest,
)
from tip_ray.checkpoint.state import FaultCounters, TrainingCounters


def fake_checkpoint(store: CheckpointStore, step: int, payload: bytes = b"x" * 1000):
    tmp = store.begin(step)
    (tmp / "learner" / "shards").mkdir(parents=True)
    (tmp / "learner" / "shards" / "__0_0.distcp").write_bytes(payload + bytes([step]))
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
    return store.commit(tmp, step)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "extra", "manifest"])
def test_manifest_detects_damage(tmp_path, damage):
    store = CheckpointStore(tmp_path, keep_last=3)
    folder = fake_checkpoint(store, 2)
    assert verify_manifest(folder) == 2
    shard = folder / "learner" / "shards" / "__0_0.distcp"
    if damage == "truncate":
        with shard.open("r+b") as handle:
            handle.truncate(10)
    elif damage == "flip":  # same size, one byte changed
        data = bytearray(shard.read_bytes())
        data[500] ^= 1
        shard.write_bytes(bytes(data))
    elif damage == "delete":
        shard.unlink()
    elif damage == "extra":
        (folder / "stray.bin").write_bytes(b"?")
    else:
        (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointDamaged):
        verify_manifest(folder)


def test_fallback_to_previous_checkpoint_with_warning(tmp_path, caplog):
    store = CheckpointStore(tmp_path, keep_last=2)
    for step in (2, 4, 6):
        fake_checkpoint(store, step)
    assert store.steps() == [4, 6]  # keep_last
    shard = store.folder(6) / "learner" / "shards" / "__0_0.distcp"
    with shard.open("r+b") as handle:
        handle.truncate(shard.stat().st_size - 1)
    with caplog.at_level(logging.WARNING, logger="tip_ray"):
        found, warnings = store.latest_valid()
    assert found.step == 4 and found.path == store.folder(4)
    assert len(warnings) == 1 and "step_6 is damaged" in warnings[0] and "has 1000 bytes" in warnings[0]
    assert "step_6 is damaged" in caplog.text
    # Set aside, never tried again, and not in the way of the step written anew.
    assert (store.root / "damaged_step_6").is_dir() and store.steps() == [4]
    fake_checkpoint(store, 6)
    assert store.latest_valid()[0].step == 6


def test_crash_mid_write_leaves_the_previous_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2)
    fake_checkpoint(store, 2)
    # A writer killed before its rename: the temporary folder is all that is left of step 4.
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from tip_ray.checkpoint import CheckpointStore\n"
        f"store = CheckpointStore(Path({str(tmp_path)!r}), keep_last=2)\n"
        "tmp = store.begin(4)\n"
        "(tmp / 'half.bin').write_bytes(b'y' * 100)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9
    found, warnings = store.latest_valid()
    assert found.step == 2 and warnings == []
    assert [p.name for p in store.remove_partial()] == [".step_4.tmp"]
    assert sorted(p.name for p in store.root.iterdir()) == ["step_2"]


def test_checkpoint_folders_are_private(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=1)
    folder = fake_checkpoint(store, 1)
    assert os.stat(store.root).st_mode & 0o077 == 0
    assert os.stat(folder).st_mode & 0o077 == 0


def test_logs_go_back_to_the_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 5)]
    (run_dir / "metrics.jsonl").write_text("\n".join(rows[:2]) + "\n")
    (run_dir / "evals.jsonl").write_text(json.dumps({"step": 2, "accuracy": 0.5}) + "\n")
    store = CheckpointStore(run_dir, keep_last=2)
    tmp = store.begin(2)
    save_logs(run_dir, tmp)
    folder = store.commit(tmp, 2)
    # The run went on to step 4 (a partial line too, as a kill mid-write leaves), then died.
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write("\n".join(rows[2:]) + '\n{"step": 5, "lo')
    with (run_dir / "evals.jsonl").open("a") as handle:
        handle.write(json.dumps({"step": 4, "accuracy": 0.7}) + "\n")
    assert restore_logs(run_dir, folder) == 3  # steps 3, 4 and the half-written 5
    assert (run_dir / "metrics.jsonl").read_text().splitlines() == rows[:2]
    assert [json.loads(l)["step"] for l in (run_dir / "evals.jsonl").read_text().splitlines()] == [2]
    assert restore_logs(run_dir, None) == 2  # started over: nothing kept
    assert (run_dir / "metrics.jsonl").read_text() == ""


def test_trainer_state_round_trip():
    state = TrainerState(
        step=4, learner_step=3, data_epoch=1, data_index=7, data_seed=5, data_shuffle=True, num_prompts=64,
        prompts_per_step=4, max_policy_lag=1, in_flight=2, policy_versions=(3,),
        training=TrainingCounters(skipped_steps=1, consecutive_bad_steps=0),
        faults=FaultCounters(actor_restarts=2, resumes=1, batches_redone=3),
        wall_seconds=12.5, python_rng="", torch_rng="",
    )
    assert TrainerState.from_json(state.to_json()) == state
    # A checkpoint written while the driver kept counters nothing read still resumes.
    old = json.loads(state.to_json())
    old["training"].update(nonfinite_inputs=12, empty_responses=3)
    old["faults"]["automatic_resumes"] = 1
    assert TrainerState.from_json(json.dumps(old)) == state


def test_config_changes_that_block_a_resume():
    saved = "train:\n  steps: 8\n  seed: 0\ndata:\n  path: /a.jsonl\n  shuffle: true\nname: x\n"
    current = {"train": {"steps": 10, "seed": 0}, "data": {"path": "/moved/a.jsonl", "shuffle": True}, "name": "x"}
    blocking, harmless = config_changes(saved, current)
    assert blocking == [] and sorted(harmless) == ["data.path: '/a.jsonl' -> '/moved/a.jsonl'", "train.steps: 8 -> 10"]
    current["train"]["seed"] = 1
    current["data"]["shuffle"] = False
    blocking, _ = config_changes(saved, current)
    assert blocking == ["data.shuffle: True -> False", "train.seed: 0 -> 1"]


def test_one_driver_per_run_folder(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    # A holder killed with -9 leaves no stale lock behind.
    script = (
        "import os, time\nfrom pathlib import Path\nfrom tip_ray.checkpoint import RunLock\n"
        f"RunLock(Path({str(tmp_path)!r})).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire().release()
