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


@ray.remote(num_cpus=0)
class Refuses:
    """A stage whose constructor raises, as one with a bad setting does."""

    def __init__(self, message: str):
        raise ValueError(message)

    def ready(self) -> str:
        return "never"


def test_a_stage_whose_constructor_raises_is_not_taken_for_a_death(ray_local):
    from tip_ray.pipeline.faults import StageDied, StageStartFailed
    from tip_ray.pipeline.waits import wait_stage

    refusing = Refuses.options(max_restarts=3).remote("teacher.path: no such folder\nsecond line")
    with pytest.raises(StageStartFailed) as caught:
        wait_stage(refusing.ready.remote(), "teacher", 60.0)
    # The constructor's own error, not Ray's traceback around it; and not a StageDied, which resumes.
    assert str(caught.value) == "stage 'teacher' could not start: ValueError: teacher.path: no such folder\nsecond line"
    assert not isinstance(caught.value, StageDied) and caught.value.stage == "teacher"


def test_raised_message_keeps_the_whole_text_when_it_has_no_frames():
    from tip_ray.pipeline.faults import raised_message

    assert raised_message("plain failure\n") == "plain failure"
    assert raised_message("ray::A.__init__()\n  File \"x.py\", line 1\n    raise E\nE: bad\n") == "E: bad"


@pytest.mark.slow
def test_a_run_whose_teacher_service_is_missing_stops_at_once(ray_local, tiny_pair, demo_prompts, tmp_path, caplog):
    from tests.teacher.service_support import service_config
    from tip_ray.pipeline.faults import StageStartFailed
    from tip_ray.pipeline.supervisor import run_pipeline

    config = service_config(tiny_pair, demo_prompts, tmp_path, "missing",
                            backend={"type": "service", "name": "nobody-serves", "on_missing": "fail"})
    assert config.train.max_resumes > 0
    caplog.set_level("INFO", logger="tip_ray")
    with pytest.raises(StageStartFailed, match=r"could not start: .*TeacherServiceMissing: .*'nobody-serves' is not running"):
        run_pipeline(config, address="local")
    assert "automatic resume" not in caplog.text
