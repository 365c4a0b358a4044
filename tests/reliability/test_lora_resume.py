"""kill -9 of the driver in the middle of a LoRA run, then `tip-ray run --resume`: the run ends
with exactly the metrics of a LoRA run that nothing interrupted (its checkpoints hold the
adapters and their optimizer state, the base comes back from the model folder)."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import (
    CHECKPOINT_EVERY,
    RESUME_TIMEOUT_S,
    START_TIMEOUT_S,
    STEPS,
    checkpoint_manifest,
    cli_env,
    comparable,
    read_rows,
    reliability_doc,
    run_cli,
    start_cli,
    wait_until,
    write_pipeline,
)
from tests.reliability.processes import wait_gone

LORA = {"learner": {"num_ranks": 2, "micro_batch_size": 4, "lora": {"rank": 4, "alpha": 8.0},
                    "optimizer": {"lr": 1e-2, "warmup_steps": 0}}}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lora_run_resumes_exactly_after_kill_9(ray_local, tiny_pair, demo_prompts, tmp_path, ray_tmp):
    from torch.distributed.checkpoint import FileSystemReader

    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.supervisor import run_pipeline

    reference_dir = tmp_path / "reference"
    reference = run_pipeline(load_pipeline(write_pipeline(
        tmp_path / "ref", reliability_doc(tiny_pair, demo_prompts, reference_dir, **LORA))))
    reference_rows = read_rows(reference_dir)
    assert reference.final_adapter is not None

    run_dir = tmp_path / "run"
    pipeline = write_pipeline(tmp_path / "cli", reliability_doc(tiny_pair, demo_prompts, run_dir, **LORA))
    env = cli_env(ray_tmp)
    proc = start_cli(["run", str(pipeline)], env, tmp_path / "first.log")
    try:
        manifest = checkpoint_manifest(run_dir, 2 * CHECKPOINT_EVERY)
        wait_until(manifest.exists, proc, START_TIMEOUT_S, f"{manifest} appeared")
        proc.kill()  # SIGKILL: no cleanup code runs in the driver
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(ray_tmp, 90) == []
    rows_at_kill = len(read_rows(run_dir))
    assert rows_at_kill < STEPS, "the run finished before it was killed"

    shards = run_dir / "checkpoints" / f"step_{2 * CHECKPOINT_EVERY}" / "learner" / "shards"
    keys = FileSystemReader(str(shards)).read_metadata().state_dict_metadata
    weights = [k for k in keys if k.startswith("model.")]
    assert weights and all(".lora_" in k for k in weights), "a LoRA checkpoint holds the adapters only"
    assert any(k.startswith("optim.state.") and ".lora_" in k for k in keys)

    resume_log = tmp_path / "resume.log"
    code, output = run_cli(["run", str(pipeline), "--resume"], env, resume_log, RESUME_TIMEOUT_S)
    assert code == 0, output[-3000:]
    assert "resumed from checkpoint step_" in output
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert comparable(rows) == comparable(reference_rows)
    # Both exports exist and the merged weights equal the uninterrupted run's.
    from safetensors.torch import load_file

    assert (run_dir / "final_adapter" / "adapter_model.safetensors").is_file()
    mine = load_file(str(run_dir / "final_model" / "model.safetensors"))
    theirs = load_file(str(reference.final_model / "model.safetensors"))
    assert mine.keys() == theirs.keys() and all((mine[k] == theirs[k]).all() for k in mine)
