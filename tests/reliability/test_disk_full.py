"""A full disk, on a real small filesystem (a tmpfs mounted for the test): a checkpoint that does
not fit stops the run with one clear line, its partial folder deleted and the previous checkpoint
kept, and the next start resumes from it; a partial checkpoint left by a crash is deleted before
the next start writes anything, so the space it held is free for that start."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tests.reliability.conftest import read_rows, write_pipeline

MOUNT_SIZE = "8m"


@pytest.fixture
def small_fs(tmp_path):
    """An 8 MiB tmpfs (needs root or CAP_SYS_ADMIN; skipped otherwise)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={MOUNT_SIZE}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path, leave_bytes: int = 0) -> int:
    """Write `path` until the filesystem is full, then give back `leave_bytes`; returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = b"\0" * 65536
    with path.open("wb") as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(max(size - leave_bytes, 0))
    return path.stat().st_size


def load(tmp_path, doc):
    from tip_ray.config import load_pipeline

    return load_pipeline(write_pipeline(tmp_path / "pipeline", doc))


def test_next_start_deletes_a_partial_checkpoint_before_writing(small_fs, tiny_pair, demo_prompts, tmp_path, caplog):
    from tip_ray.pipeline.prepare import write_resolved_config
    from tip_ray.pipeline.run_folder import claim_run_folder

    run_dir = small_fs / "run"
    run_dir.mkdir(mode=0o700)
    config = load(tmp_path, tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir))
    fill(run_dir / "checkpoints" / ".step_3.tmp" / "learner" / "shard")  # a crash mid-checkpoint on a full disk
    caplog.set_level("WARNING", logger="tip_ray")
    lock = claim_run_folder(run_dir, lambda folder: write_resolved_config(config, folder))
    lock.release()
    assert not (run_dir / "checkpoints" / ".step_3.tmp").exists()
    assert "removed .step_3.tmp" in caplog.text
    assert yaml.safe_load((run_dir / "config.resolved.yaml").read_text())["name"] == config.name


def test_a_full_disk_at_start_is_one_clear_error(small_fs, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.checkpoint import RunLock
    from tip_ray.pipeline.prepare import write_resolved_config
    from tip_ray.pipeline.run_folder import DiskFull, claim_run_folder

    run_dir = small_fs / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / ".lock").touch()  # the lock file exists: the full disk hits the config
    config = load(tmp_path, tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir))
    fill(small_fs / "someone_elses_file")
    with pytest.raises(DiskFull, match=r"could not write the resolved config to .*: No space left on device; "
                                        r"free space there .*then run the same command again"):
        claim_run_folder(run_dir, lambda folder: write_resolved_config(config, folder))
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    RunLock(run_dir).acquire().release()  # the failed start let go of the folder


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_checkpoint_on_a_full_disk_stops_cleanly_and_the_run_resumes(small_fs, ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.checkpoint import verify_manifest
    from tip_ray.checkpoint.space import CheckpointWriteFailed
    from tip_ray.pipeline.supervisor import run_pipeline

    run_dir = small_fs / "run"
    filler = small_fs / "filler"
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir, name="diskfull",
                            train={"steps": 4, "seed": 0, "stage_timeout_s": 240},
                            checkpoint={"every_steps": 2, "keep_last": 2, "export_hf": True})
    config = load(tmp_path, doc)

    def fill_after_step_3(row: dict) -> None:
        if row["batch_id"] == 2:  # room for a metrics row, not for checkpoint step_4
            fill(filler, leave_bytes=48 * 1024)

    with pytest.raises(CheckpointWriteFailed) as failed:
        run_pipeline(config, on_step=fill_after_step_3)
    message = str(failed.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"checkpoint step_4 could not be written under {run_dir / 'checkpoints'}: No space left on device")
    assert "the last complete checkpoint, step_2, is kept: free space there" in message
    assert "continues from step_2" in message
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["step_2"], names  # the partial step_4 is gone at once
    assert verify_manifest(run_dir / "checkpoints" / "step_2") == 2
    assert len(read_rows(run_dir)) == 4

    filler.unlink()  # the operator frees space; the same command continues from step_2
    summary = run_pipeline(config)
    assert summary.resumed_from == 2 and summary.batches_redone == 2
    assert [r["step"] for r in read_rows(run_dir)] == [1, 2, 3, 4]
    assert verify_manifest(run_dir / "checkpoints" / "step_4") == 4


def test_failure_reason_finds_a_full_disk_in_every_shape():
    from torch.distributed.checkpoint.api import CheckpointException

    from tip_ray.checkpoint.space import failure_reason

    enospc = OSError(errno.ENOSPC, "No space left on device", "/ckpt/__0_0.distcp")
    # torch.distributed.checkpoint gathers every rank's error into one exception.
    gathered = CheckpointException("save failed", {0: (enospc, None), 1: (enospc, None)})
    assert failure_reason(gathered) == ("No space left on device (/ckpt/__0_0.distcp)", True)
    try:
        raise RuntimeError("while writing") from OSError(errno.EDQUOT, "Disk quota exceeded")
    except RuntimeError as chained:
        assert failure_reason(chained) == ("Disk quota exceeded", True)
    # torch.save's zip writer does not say ENOSPC: the free space left tells it.
    zip_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    reason, no_space = failure_reason(zip_error, free=4096, needed=300 * 1024)
    assert no_space and reason.startswith("No space left on device (4 KiB free; the previous checkpoint takes 300 KiB")
    assert failure_reason(zip_error, free=10**10, needed=300 * 1024) == (str(zip_error), False)
    assert failure_reason(OSError(errno.EROFS, "Read-only file system")) == ("Read-only file system", False)


def test_a_checkpoint_that_fills_the_disk_is_deleted_and_the_last_good_one_kept(small_fs):
    """The store and the failure path the run uses, with a writer that fills the disk (the run
    itself: the slow test above)."""
    from tip_ray.checkpoint import CheckpointStore, verify_manifest
    from tip_ray.checkpoint.space import CheckpointWriteFailed, write_or_stop

    store = CheckpointStore(small_fs / "run", keep_last=2)
    good = store.begin(2)
    (good / "weights.bin").write_bytes(b"\1" * 100_000)
    store.commit(good, 2)

    def writer_that_fills_the_disk():
        tmp = store.begin(4)
        with (tmp / "weights.bin").open("wb") as handle:
            while True:
                handle.write(b"\1" * 65536)
                handle.flush()

    with pytest.raises(CheckpointWriteFailed) as failed:
        write_or_stop(store, 4, writer_that_fills_the_disk)
    assert str(failed.value) == (
        f"checkpoint step_4 could not be written under {store.root}: No space left on device. The partial "
        f"checkpoint was deleted and the last complete checkpoint, step_2, is kept: free space there (or "
        f"raise the quota), then run the same command again; it continues from step_2")
    assert sorted(p.name for p in store.root.iterdir()) == ["step_2"]
    assert verify_manifest(store.folder(2)) == 2
