"""The teacher service on a real local Ray: two runs' batches scored at once, exactly as the run's
own teacher scores them, by replicas built once and served in turn; what a run checks before
using it (same teacher, vocabulary and signal form; the service there at all); a client that dies
mid-request; a replica killed mid-request (restarted, or a clear failure); status and stop."""

from __future__ import annotations

import pytest

from tests.teacher.service_support import rollout_batch, service_config
from tip_ray.config.teacher_service import SERVICE_NAMESPACE


def client_settings(tiny_pair, demo_prompts, tmp_path, name: str, *, signal=None, **backend):
    from tip_ray.pipeline.placement import Role, plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.stages import scorer_settings

    config = service_config(tiny_pair, demo_prompts, tmp_path, f"client-{name}", signal=signal,
                            backend={"type": "service", "name": name, **backend})
    prepared = prepare_run(config, write=False)
    return scorer_settings(prepared, plan_placement(config)[Role.TEACHER], 0), prepared


def test_a_run_refuses_a_service_with_another_signal_form(served, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.teacher.service_client import ServiceTeacherClient
    from tip_ray.teacher.service_identity import TeacherServiceMismatch

    served("hidden-teacher")
    settings, prepared = client_settings(tiny_pair, demo_prompts, tmp_path, "hidden-teacher",
                                         signal={"type": "topk", "k": 4})
    with pytest.raises(TeacherServiceMismatch) as caught:
        ServiceTeacherClient(settings, tokenizer_path=prepared.tokenizer_path, run_id="r")
    message = str(caught.value)
    assert "'hidden-teacher' differs from this run in signal form" in message
    assert "signal hidden" in message and "signal topk(k=4)" in message  # both sides named


def test_a_run_refuses_a_service_with_another_teacher(served, tiny_pair, demo_prompts, tmp_path):
    """The student served as if it were the teacher: same vocabulary, another model."""
    import dataclasses

    from tip_ray.teacher.service_client import ServiceTeacherClient
    from tip_ray.teacher.service_identity import TeacherServiceMismatch

    served("other-teacher")
    settings, prepared = client_settings(tiny_pair, demo_prompts, tmp_path, "other-teacher")
    settings = dataclasses.replace(settings, model_path=str(tiny_pair.student_path))
    with pytest.raises(TeacherServiceMismatch, match=r"differs from this run in teacher model\. "):
        ServiceTeacherClient(settings, tokenizer_path=prepared.tokenizer_path, run_id="r")


def test_a_missing_service_fails_or_is_waited_for(ray_local, tiny_pair, demo_prompts, tmp_path):
    import time

    from tip_ray.teacher.service_client import ServiceTeacherClient, TeacherServiceMissing

    settings, prepared = client_settings(tiny_pair, demo_prompts, tmp_path, "nobody-serves")
    with pytest.raises(TeacherServiceMissing, match=r"'nobody-serves' is not running .*on_missing: wait"):
        ServiceTeacherClient(settings, tokenizer_path=prepared.tokenizer_path, run_id="r")
    settings, prepared = client_settings(tiny_pair, demo_prompts, tmp_path, "nobody-serves",
                                         on_missing="wait", wait_s=2)
    begin = time.monotonic()
    with pytest.raises(TeacherServiceMissing, match=r"after waiting 2 s"):
        ServiceTeacherClient(settings, tokenizer_path=prepared.tokenizer_path, run_id="r")
    assert time.monotonic() - begin >= 2


@pytest.mark.slow  # 20-36 s each: the default suite keeps the cheaper service tests
def test_the_service_outlives_a_client_that_dies_mid_request(served, ray_local):
    import ray

    from tip_ray.pipeline.service_control import find_service, list_services, service_status, stop_service

    prepared = served("survivor")

    @ray.remote
    class Caller:
        def call(self, batches):
            front = ray.get_actor("survivor", namespace=SERVICE_NAMESPACE)
            return [ray.get(ray.get(front.score.remote("caller", b))[0]) for b in batches]

    caller = Caller.remote()
    batches = [rollout_batch(prepared.vocab_size, batch_id=i) for i in range(3)]
    pending = caller.call.remote(batches)
    status = service_status("survivor")
    while not status["served"] and not status["pending"]:  # the request reached the service
        status = service_status("survivor")
    ray.kill(caller)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(pending)
    front = find_service("survivor")
    [ref] = ray.get(front.score.remote("driver", batches[0]))
    scored = ray.get(ref)
    assert scored.teacher.hidden.shape[0] == batches[0].num_response_tokens
    status = service_status("survivor")
    assert status["served"]["driver"] == 1 and status["constructions"] == 1
    assert [r["state"] for r in status["replicas"]] == ["alive"]
    assert "survivor" in list_services()
    assert stop_service("survivor") == 2  # the front and its replica
    assert find_service("survivor") is None and "survivor" not in list_services()


def own_teacher(prepared):
    """The scorer a run would start for itself, in this process."""
    from tip_ray.pipeline.placement import Role, plan_placement
    from tip_ray.pipeline.stages import scorer_settings
    from tip_ray.teacher.scorer import TeacherScorer

    return TeacherScorer(scorer_settings(prepared, plan_placement(prepared.config)[Role.TEACHER], 0))


def scores(scored):
    return scored.teacher.hidden, scored.teacher_sampled_logprobs


def test_two_runs_at_once_get_their_own_teachers_scores_in_turn(served):
    import ray
    import torch

    from tip_ray.pipeline.service_control import find_service, service_status

    prepared = served("two-runs")
    front = find_service("two-runs")
    batches = {run: [rollout_batch(prepared.vocab_size, batch_id=10 * k + i) for i in range(n)]
               for k, (run, n) in enumerate((("run-a", 4), ("run-b", 2)))}
    # Run A sends four batches at once, then run B two: B must not wait for all of A's.
    refs = {run: [front.score.remote(run, b) for b in bs] for run, bs in batches.items()}
    answers = {run: [ray.get(ray.get(r)[0]) for r in rs] for run, rs in refs.items()}
    local = own_teacher(prepared)
    for run, bs in batches.items():
        for batch, scored in zip(bs, answers[run]):
            expected = scores(local.score(batch))
            assert all(torch.equal(a, b) for a, b in zip(scores(scored), expected)), f"{run}: scores differ"
    status = service_status("two-runs")
    assert status["constructions"] == 1 and status["served"] == {"run-a": 4, "run-b": 2}, status
    order = status["recent"]
    assert sorted(order) == ["run-a"] * 4 + ["run-b"] * 2
    assert order.index("run-b") < len(order) - 1 - order[::-1].index("run-a"), f"run B waited for all of A: {order}"


@pytest.mark.slow  # 20-36 s each: the default suite keeps the cheaper service tests
@pytest.mark.parametrize("max_restarts", [-1, 0], ids=["restarted", "fails-clearly"])
def test_a_replica_killed_mid_request(served, max_restarts):
    import ray
    import torch

    from tip_ray.teacher.service import TeacherServiceError, replica_name
    from tip_ray.pipeline.service_control import find_service, service_status

    name = f"kill-mid-{max_restarts + 1}"
    prepared = served(name, max_restarts=max_restarts)
    front = find_service(name)
    batch = rollout_batch(prepared.vocab_size, rows=16, length=128, batch_id=5)
    # Killed right after the request is sent: it is queued at the front or on the replica.
    answer = front.score.remote("run", batch)
    ray.kill(ray.get_actor(replica_name(name, 0), namespace=SERVICE_NAMESPACE), no_restart=False)
    if max_restarts == 0:
        with pytest.raises(TeacherServiceError, match=rf"teacher service '{name}': {name}/replica-0 failed"):
            ray.get(ray.get(answer)[0])
        return
    scored = ray.get(ray.get(answer)[0])  # redone by the restarted replica
    assert all(torch.equal(a, b) for a, b in zip(scores(scored), scores(own_teacher(prepared).score(batch))))
    status = service_status(name)
    assert status["constructions"] == 2 and status["served"] == {"run": 1}, status  # scored once for the run


@pytest.mark.slow  # 20-36 s each: the default suite keeps the cheaper service tests
def test_a_service_gone_mid_run_fails_or_is_waited_for(served, tiny_pair, demo_prompts, tmp_path):
    import threading

    import torch

    from tip_ray.teacher.service_client import ServiceTeacherClient, TeacherServiceMissing
    from tip_ray.pipeline.service_control import service_status, stop_service

    served("comes-back")
    clients = {}
    for policy in ("fail", "wait"):
        settings, prepared = client_settings(tiny_pair, demo_prompts, tmp_path, "comes-back", on_missing=policy,
                                             wait_s=600)
        clients[policy] = ServiceTeacherClient(settings, tokenizer_path=prepared.tokenizer_path, run_id=policy)
    batch = rollout_batch(prepared.vocab_size)
    first = clients["wait"].score(batch)
    stop_service("comes-back")
    with pytest.raises(TeacherServiceMissing, match="'comes-back' is not running"):
        clients["fail"].score(batch)
    comeback = threading.Timer(1.0, served, args=("comes-back",))
    comeback.start()
    again = clients["wait"].score(batch)  # waits until the service is back, then sends the batch again
    comeback.join()
    assert torch.equal(first.teacher.hidden, again.teacher.hidden)
    assert service_status("comes-back")["served"] == {"wait": 1}  # the new service's first request
