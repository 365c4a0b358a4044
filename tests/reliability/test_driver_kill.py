"""kill -9 of the driver mid-run, a damaged newest checkpoint, then `tip-ray run --resume`: the
run falls back to the previous checkpoint with a warning and ends with exactly the metrics of a
run that was never interrupted, every prompt batch trained once; the embedded Ray dies with its
driver; secrets from the environment appear nowhere in what the run wrote."""

from __future__ import annotations

import secrets
import stat

import psutil
import pytest

from tests.reliability.conftest import (
    CHECKPOINT_EVERY,
    LAG,
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
from tests.reliability.processes import processes_under, wait_gone


def listening_sockets(pids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found.update((c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN)
    return found


# slow: two whole CLI runs with their own Ray (~100 s); the default suite keeps the in-process
# resume tests (test_stage_faults, test_masked_resume).
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_kill_driver_then_resume(reference_run, tiny_pair, demo_prompts, tmp_path, ray_tmp):
    _, reference_rows = reference_run
    run_dir = tmp_path / "run"
    pipeline = write_pipeline(tmp_path, reliability_doc(tiny_pair, demo_prompts, run_dir))
    secret_values = {"WANDB_API_KEY": f"wandb-{secrets.token_hex(12)}", "HF_TOKEN": f"hf_{secrets.token_hex(12)}"}
    env = cli_env(ray_tmp, **secret_values)

    first_log = tmp_path / "first.log"
    proc = start_cli(["run", str(pipeline)], env, first_log)
    try:
        manifest = checkpoint_manifest(run_dir, 2 * CHECKPOINT_EVERY)
        wait_until(manifest.exists, proc, START_TIMEOUT_S, f"{manifest} appeared")
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        ray_processes = processes_under(ray_tmp)
        listening = listening_sockets([pid for pid, _ in ray_processes])
        proc.kill()  # SIGKILL: no cleanup code runs in the driver
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert ray_processes, "the embedded Ray's processes were not found under its temp dir"
    # No dashboard, job server (HTTP, 8265 and its retries) or Ray client server (10001) is open:
    # the embedded Ray serves only this driver (were the dashboard enabled, on 127.0.0.1 only).
    web = {(ip, port) for ip, port in listening if 8265 <= port <= 8315 or port == 10001}
    assert not web, web
    # Ray's daemons share their driver's fate; the workers follow their raylet.
    assert wait_gone(ray_tmp, 90) == []
    assert not [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]

    rows_at_kill = len([l for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()])
    assert rows_at_kill < STEPS, "the run finished before it was killed"
    complete = sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*")
                      if (p / "manifest.json").exists())
    assert len(complete) == 2, complete  # keep_last
    newest, previous = complete[-1], complete[-2]
    # Damage the newest checkpoint: a truncated weight shard, as a disk-full write would leave.
    shard = run_dir / "checkpoints" / f"step_{newest}" / "learner" / "shards" / "__0_0.distcp"
    with shard.open("r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)

    resume_log = tmp_path / "resume.log"
    code, output = run_cli(["run", str(pipeline), "--resume"], env, resume_log, RESUME_TIMEOUT_S)
    assert code == 0, output[-3000:]
    assert f"checkpoint step_{newest} is damaged" in output
    assert f"resumed from checkpoint step_{previous}" in output
    assert (run_dir / "checkpoints" / f"damaged_step_{newest}").is_dir()

    rows = read_rows(run_dir)
    # Every step exactly once, bit-identical to the run that nothing interrupted.
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert comparable(rows) == comparable(reference_rows)
    trained = [tuple(r["prompt_rows"]) for r in rows]
    assert len(set(trained)) == STEPS and set(trained) == {tuple(r["prompt_rows"]) for r in reference_rows}
    # The resume is counted: the rows after `previous` (up to the kill) were trained again.
    redone = rows_at_kill - previous
    after = rows[previous]
    assert after["resumes"] == 1 and after["batches_redone"] == redone and after["in_flight_relaunched"] == LAG + 1
    assert f"{redone} batch(es) trained after it are trained again" in output
    assert all(r["resumes"] == 0 for r in rows[:previous])

    # User-only permissions on the run folder and the checkpoints.
    for folder in (run_dir, run_dir / "checkpoints"):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, oct(folder.stat().st_mode)
    # Secrets from the environment appear in no file of the run and in no log line.
    written = [p for p in run_dir.rglob("*") if p.is_file()] + [first_log, resume_log]
    for path in written:
        data = path.read_bytes()
        for value in secret_values.values():
            assert value.encode() not in data, f"a secret was written to {path}"
