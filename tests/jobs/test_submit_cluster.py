"""`tip-ray submit | status | logs | stop` against a real Ray cluster with token authentication,
each command a real process, as a user would run them."""

from __future__ import annotations

import time

import pytest

from tests.pipeline_doc import tiny_pipeline_doc
from tests.jobs.conftest import REPO, client_env, run_cli
from tests.jobs.ray_processes import free_port

pytestmark = pytest.mark.cluster


def wait_until(condition, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def job_status(cluster, job_id: str) -> str:
    return cluster.get(f"/api/jobs/{job_id}").json()["status"]


def alive_actors_of(cluster, job_id: str) -> list[str]:
    ray_job_id = cluster.get(f"/api/jobs/{job_id}").json()["job_id"]
    listing = cluster.get("/api/v0/actors", detail="true", limit="1000").json()["data"]["result"]["result"]
    return [a["class_name"] for a in listing if a["job_id"] == ray_job_id and a["state"] == "ALIVE"]


def test_submit_follow_runs_the_pipeline_and_logs_come_back(
    token_cluster, tiny_pair, demo_prompts, shipped_pipeline, client_home, tmp_path
):
    from tip_ray.pipeline.metrics import read_metrics

    run_dir = tmp_path / "run"
    yaml_path = shipped_pipeline(tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir))
    relative = yaml_path.relative_to(REPO).as_posix()
    submitted = run_cli(
        ["submit", relative, "--address", token_cluster.dashboard_url,
         "--token-file", str(token_cluster.token_file), "--set", "train.steps=2", "--follow"],
        client_env(client_home),
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = submitted.job_id
    assert job_id.startswith("tip-ray-tiny-")
    assert "run 'tiny' finished: 2 steps" in submitted.stdout  # streamed by --follow
    assert f"job {job_id} SUCCEEDED" in submitted.stderr
    # The run happened on the cluster with the override applied: two metric rows.
    assert [row["step"] for row in read_metrics(run_dir)] == [1, 2]

    # The token from RAY_AUTH_TOKEN, then from the default file with RAY_AUTH_MODE=token.
    status = run_cli(["status", job_id, "--address", token_cluster.dashboard_url],
                     client_env(client_home, RAY_AUTH_TOKEN=token_cluster.token))
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{job_id}: SUCCEEDED")
    assert f"tip_ray.cli run {relative} --address auto --set train.steps=2" in status.stdout

    (client_home / ".ray").mkdir()
    (client_home / ".ray" / "auth_token").write_text(token_cluster.token + "\n")
    logs = run_cli(["logs", job_id, "--address", token_cluster.dashboard_url],
                   client_env(client_home, RAY_AUTH_MODE="token"))
    assert logs.returncode == 0, logs.stderr
    assert "run 'tiny' finished: 2 steps" in logs.stdout


# slow (~40 s): a job left running long enough to be stopped; submit/logs/status stay in the default suite.
@pytest.mark.slow
def test_stop_stops_a_running_job(token_cluster, tiny_pair, demo_prompts, shipped_pipeline, client_home, tmp_path):
    from tip_ray.pipeline.metrics import read_metrics

    run_dir = tmp_path / "run"
    yaml_path = shipped_pipeline(tiny_pipeline_doc(tiny_pair, demo_prompts, run_dir))
    env = client_env(client_home, RAY_AUTH_TOKEN_PATH=str(token_cluster.token_file))
    submitted = run_cli(["submit", str(yaml_path), "--address", token_cluster.dashboard_url,
                         "--set", "train.steps=100000"], env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.job_id
    # Stop it in the middle of the run: every stage actor up (rollout, scorer, selector, learner).
    wait_until(lambda: len(alive_actors_of(token_cluster, job_id)) >= 4
               or job_status(token_cluster, job_id) not in ("PENDING", "RUNNING"), "the run's actors")
    assert job_status(token_cluster, job_id) == "RUNNING"

    stopped = run_cli(["stop", job_id, "--address", token_cluster.dashboard_url, "--timeout", "60"], env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"{job_id}: STOPPED"
    assert job_status(token_cluster, job_id) == "STOPPED"
    wait_until(lambda: not alive_actors_of(token_cluster, job_id), "the stopped run's actors to exit", 60)
    steps = len(read_metrics(run_dir))
    time.sleep(2)
    assert len(read_metrics(run_dir)) == steps  # nothing trains any more


def test_wrong_token_is_refused_with_a_clear_message(token_cluster, tmp_path, client_home):
    wrong = tmp_path / "stale.token"
    wrong.write_text("0" * 64)
    result = run_cli(["submit", "pipelines/demo.yaml", "--address", token_cluster.dashboard_url,
                      "--token-file", str(wrong), "--job-id", "never-created"], client_env(client_home))
    assert result.returncode == 2
    message = result.stderr
    assert f"the Ray cluster at {token_cluster.dashboard_url} rejected the token from --token-file {wrong}" in message
    assert "HTTP 403" in message and "--token-file FILE" in message and "kubectl get secret" in message
    assert "disabled" not in message  # never advise turning authentication off
    assert "Traceback" not in message
    jobs = token_cluster.get("/api/jobs/").json()
    assert all(job["submission_id"] != "never-created" for job in jobs)


def test_missing_token_is_refused_with_a_clear_message(token_cluster, client_home):
    (client_home / ".ray").mkdir()
    (client_home / ".ray" / "auth_token").write_text("a local ray's token")
    result = run_cli(["status", "any-job", "--address", token_cluster.dashboard_url], client_env(client_home))
    assert result.returncode == 2
    message = result.stderr
    assert "requires an authentication token (HTTP 401" in message and "none was sent" in message
    assert "auth_token exists but is sent only with RAY_AUTH_MODE=token" in message
    assert "disabled" not in message and "Traceback" not in message


def test_unknown_job_and_unreachable_cluster(token_cluster, client_home):
    env = client_env(client_home, RAY_AUTH_TOKEN=token_cluster.token)
    unknown = run_cli(["logs", "no-such-job", "--address", token_cluster.dashboard_url], env)
    assert unknown.returncode == 2
    assert f"no job 'no-such-job' on the cluster at {token_cluster.dashboard_url}" in unknown.stderr
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = run_cli(["status", "any-job", "--address", closed], env)
    assert unreachable.returncode == 2
    assert f"cannot reach the Ray dashboard at {closed}" in unreachable.stderr
