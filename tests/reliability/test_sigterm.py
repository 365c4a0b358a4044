"""SIGTERM (a pod deleted or preempted): the driver finishes its step, writes a checkpoint when one
fits in the grace period, stops with exit code 143 and a one-line message, and its embedded Ray
goes with it; the same command then continues with nothing lost: the metrics equal those of a
run never interrupted, every batch trained once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.reliability.conftest import (
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
from tip_ray.pipeline.signals import (
    SHUTDOWN_MARGIN_S,
    SIGTERM_EXIT_CODE,
    StopRequest,
    checkpoint_fits,
    stop_message,
)


def test_checkpoint_fits_in_what_is_left_of_the_grace_period():
    assert SIGTERM_EXIT_CODE == 143
    assert checkpoint_fits(30.0, 2.0)  # 2 s × 1.5 + margin
    assert not checkpoint_fits(30.0, 20.0)
    assert not checkpoint_fits(4.0, 0.1)  # less than the time to shut down
    assert checkpoint_fits(SHUTDOWN_MARGIN_S + 1, None)  # none measured yet: try (it is atomic)
    assert not checkpoint_fits(SHUTDOWN_MARGIN_S, None)


def test_sigterm_is_noted_not_fatal_and_the_old_handler_comes_back():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *a: seen.append("old"))
    try:
        stop = StopRequest().install()
        stop.install()  # again, as after ray.init: restore must still give back the handler from before
        assert not stop.requested and stop.seconds_left(30) == 30
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal to this process
        time.sleep(0.1)
        assert stop.requested and 29 < stop.seconds_left(30) <= 30 and seen == []
        first = stop.received_at
        os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
        time.sleep(0.1)
        assert stop.received_at == first
        stop.restore()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert seen == ["old"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_stop_message_says_where_the_run_continues():
    assert stop_message(3, 3, True, None) == (
        "stopped by SIGTERM after step 3: checkpoint step_3 written; the same command (or "
        "`tip-ray run ... --resume`) continues from checkpoint step_3")
    assert "no checkpoint written (checkpoint.on_sigterm.enabled is false)" in stop_message(
        3, 2, False, "checkpoint.on_sigterm.enabled is false")
    assert stop_message(1, None, False, "x").endswith("no checkpoint exists yet: the same command starts the run over")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_sigterm_mid_run_then_resume_loses_nothing(reference_run, tiny_pair, demo_prompts, tmp_path, ray_tmp):
    _, reference_rows = reference_run
    run_dir = tmp_path / "run"
    pipeline = write_pipeline(tmp_path, reliability_doc(tiny_pair, demo_prompts, run_dir))
    env = cli_env(ray_tmp)

    first_log = tmp_path / "first.log"
    proc = start_cli(["run", str(pipeline)], env, first_log)
    try:
        # step 2 trained and checkpointed: step 3 is under way
        wait_until(lambda: ((run_dir / "metrics.jsonl").exists() and len(read_rows(run_dir)) >= 2
                            and checkpoint_manifest(run_dir, 2).exists()), proc, 600, "step 2 and its checkpoint")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # to the driver alone, as Kubernetes signals a pod's main process
        code = proc.wait(timeout=120)
        stopped_s = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    output = first_log.read_text()
    assert code == SIGTERM_EXIT_CODE, output[-3000:]
    assert "Traceback" not in output and "SIGABRT" not in output and "Aborted" not in output, output[-3000:]
    assert "SIGTERM received: finishing the current step, then stopping" in output
    rows_at_stop = len(read_rows(run_dir))
    assert 2 <= rows_at_stop < STEPS
    # The step under way was finished and checkpointed (a measured write fits in 30 s easily).
    newest = max(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*"))
    assert newest == rows_at_stop, (newest, rows_at_stop)
    assert f"tip-ray: stopped by SIGTERM after step {rows_at_stop}: " in output
    assert f"continues from checkpoint step_{newest}" in output
    assert stopped_s < 30, stopped_s  # within Kubernetes' default grace period
    assert wait_gone(ray_tmp, 60) == []  # the embedded Ray stopped with its driver
    print(f"SIGTERM sent after step 2; the driver stopped after step {rows_at_stop} with checkpoint "
          f"step_{newest}, {stopped_s:.1f} s after the signal (exit code {code})")

    code, output = run_cli(["run", str(pipeline)], env, tmp_path / "resume.log", 900)
    assert code == 0, output[-3000:]
    assert f"resumed from checkpoint step_{newest}: 0 batch(es) trained after it are trained again" in output
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert comparable(rows) == comparable(reference_rows)
    assert len({tuple(r["prompt_rows"]) for r in rows}) == STEPS
    assert rows[newest]["resumes"] == 1 and rows[newest]["batches_redone"] == 0
