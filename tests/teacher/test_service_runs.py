"""Runs against a shared teacher service on a real local Ray: two runs at once give exactly what
each gives with its own teacher, and the service's replica was built once; a replica killed in
the middle of a run. Slow (six whole runs); tests/teacher/test_service.py checks the same at the
level of scored batches in the default suite."""

from __future__ import annotations

import threading

import pytest

from tests.teacher.service_support import deterministic, service_config
from tip_ray.config.teacher_service import SERVICE_NAMESPACE
from tip_ray.pipeline.metrics import read_metrics


def run_at_once(jobs) -> None:
    """Run the callables in threads at the same time; re-raise the first error here."""
    errors = []

    def guarded(job):
        try:
            job()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_runs_share_one_service_and_match_their_own_teacher(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.supervisor import run_pipeline
    from tip_ray.pipeline.service_control import service_status, start_service, stop_service

    seeds = (0, 1)
    run_at_once([lambda seed=seed: run_pipeline(service_config(tiny_pair, demo_prompts, tmp_path, f"own-s{seed}", seed=seed))
                 for seed in seeds])
    own = {seed: [deterministic(r) for r in read_metrics(tmp_path / f"own-s{seed}")] for seed in seeds}
    assert own[0] != own[1], "the two seeds should sample different batches"

    served_config = service_config(tiny_pair, demo_prompts, tmp_path, "serve")
    start_service(prepare_run(served_config, write=False), "shared-tiny", replicas=1)
    try:
        run_at_once([lambda seed=seed: run_pipeline(service_config(
            tiny_pair, demo_prompts, tmp_path, f"shared-s{seed}", seed=seed,
            backend={"type": "service", "name": "shared-tiny"})) for seed in seeds])
        for seed in seeds:
            shared = [deterministic(r) for r in read_metrics(tmp_path / f"shared-s{seed}")]
            assert [r["step"] for r in shared] == [1, 2]
            assert shared == own[seed], f"seed {seed}: the service's scores differ from the run's own teacher"
        status = service_status("shared-tiny")
        assert status["constructions"] == 1, status
        assert sorted(status["served"].values()) == [2, 2], status  # each run's 2 batches, once each
    finally:
        stop_service("shared-tiny")


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("max_restarts", [-1, 0], ids=["restarted", "fails-clearly"])
def test_a_replica_killed_mid_run(served, tiny_pair, demo_prompts, tmp_path, max_restarts):
    import ray

    from tip_ray.pipeline.supervisor import run_pipeline
    from tip_ray.teacher.service import TeacherServiceError, replica_name
    from tip_ray.pipeline.service_control import service_status

    name = f"killed-{max_restarts + 1}"
    served(name, max_restarts=max_restarts)
    killed = []

    def kill_after_first_step(row):
        if row["step"] == 1:
            ray.kill(ray.get_actor(replica_name(name, 0), namespace=SERVICE_NAMESPACE), no_restart=False)
            killed.append(row["step"])

    config = service_config(tiny_pair, demo_prompts, tmp_path, f"run-{name}", steps=3,
                            backend={"type": "service", "name": name})
    if max_restarts == 0:
        with pytest.raises(TeacherServiceError, match=rf"teacher service '{name}': {name}/replica-0 failed"):
            run_pipeline(config, on_step=kill_after_first_step)
        assert [r["step"] for r in read_metrics(tmp_path / f"run-{name}")] == [1]  # nothing after the kill
        return
    run_pipeline(config, on_step=kill_after_first_step)
    assert killed == [1]
    # Every step once, in order: nothing trained twice or skipped.
    assert [r["step"] for r in read_metrics(tmp_path / f"run-{name}")] == [1, 2, 3]
    status = service_status(name)
    assert status["constructions"] == 2, status  # built at the start, and once more by Ray's restart
    assert list(status["served"].values()) == [3], status  # three batches scored, each once
