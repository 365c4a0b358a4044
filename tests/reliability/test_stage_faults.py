"""Stage actors killed during a run: a rollout worker and a teacher scorer are restarted by Ray
and their in-flight calls redone; a learner rank's death makes the run resume from its last
checkpoint by itself. The run finishes with exactly the metrics of the run nothing interrupted,
every prompt batch trained once, and the metrics record each restart and the resume. A stage
that hangs or dies is reported with its name."""

from __future__ import annotations

import time

import pytest
import ray

from tests.conftest import live_actor
from tests.reliability.conftest import LAG, STEPS, comparable, read_rows, reliability_doc, write_pipeline


@pytest.mark.timeout(900)
def test_actors_killed_mid_run(reference_run, tiny_pair, demo_prompts, tmp_path, caplog):
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.supervisor import run_pipeline

    _, reference_rows = reference_run
    run_dir = tmp_path / "run"
    config = load_pipeline(write_pipeline(tmp_path, reliability_doc(
        tiny_pair, demo_prompts, run_dir, name="faults", train={"max_actor_restarts": 2, "max_resumes": 1})))
    # After update s, batches s and s + 1 are in flight: each kill hits an actor with work queued.
    plan = {1: "rollout-0", 3: "teacher-0", 5: "learner-0"}
    done: list[str] = []

    def inject(row: dict) -> None:
        target = plan.get(row["step"])
        if target and target not in done:
            done.append(target)
            ray.kill(live_actor("tip-ray/faults/", target), no_restart=False)

    caplog.set_level("INFO", logger="tip_ray")
    summary = run_pipeline(config, on_step=inject)
    assert done == ["rollout-0", "teacher-0", "learner-0"]

    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert comparable(rows) == comparable(reference_rows)
    assert len({tuple(r["prompt_rows"]) for r in rows}) == STEPS
    # Restarts are counted as they are seen (when a batch the new actor served is consumed), and
    # the count survives the automatic resume.
    counts = [r["actor_restarts"] for r in rows]
    assert counts[0] == 0 and counts == sorted(counts) and counts[-1] == 2 and summary.actor_restarts == 2
    # The learner died after update 5: the run went back to step_4 and trained batch 5 again.
    assert summary.resumes == 1 and summary.resumed_from == 4 and summary.batches_redone == 1
    assert rows[4]["resumes"] == 1 and rows[4]["batches_redone"] == 1 and rows[4]["in_flight_relaunched"] == LAG + 1
    events = caplog.text
    assert "rollout-0 was restarted by Ray" in events and "teacher-0 was restarted by Ray" in events
    assert "stage 'learner' died" in events and "automatic resume 1 of at most 1" in events
    assert "resumed from checkpoint step_4" in events


@ray.remote(num_cpus=0)
class Member:
    """A stand-in group member: answers, hangs or dies on request."""

    def answer(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


def test_hung_and_dead_stages_are_named(ray_local):
    from tip_ray.pipeline.faults import StageDied, StageTimeout
    from tip_ray.pipeline.waits import wait_all

    quick, slow = Member.remote(), Member.remote()
    ray.get([quick.answer.remote(0), slow.answer.remote(0)])
    start = time.monotonic()
    with pytest.raises(StageTimeout, match=r"stage 'learner' did not answer within train.stage_timeout_s=2s"):
        wait_all([quick.answer.remote(0), slow.answer.remote(60)], "learner", 2.0)
    assert time.monotonic() - start < 20
    # One member dies while the other is still busy: the failure is reported at once.
    ray.kill(slow)
    busy = Member.remote()
    start = time.monotonic()
    with pytest.raises(StageDied, match="stage 'learner' died"):
        wait_all([busy.answer.remote(60), slow.answer.remote(0)], "learner", 120.0)
    assert time.monotonic() - start < 30
    for actor in (quick, busy):
        ray.kill(actor)
