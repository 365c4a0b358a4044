"""`tip-ray teacher serve|status|stop` and a `tip-ray run` that uses the service, each its own
process, on a real multi-process Ray cluster started with `ray start --head` (slow)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.jobs.conftest import client_env, run_cli
from tests.jobs.ray_processes import LocalRayCluster
from tests.pipeline_doc import tiny_pipeline_doc

CLI_S = 900  # a crowded 2-core machine takes minutes to start actors


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_serve_run_status_stop_across_processes(tiny_pair, demo_prompts, tmp_path):
    cluster = LocalRayCluster.start(head_cpus=2)
    try:
        home = tmp_path / "home"
        home.mkdir()
        env = client_env(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
        address = cluster.gcs_address
        doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run", name="via-service",
                                train={"steps": 2, "seed": 0, "stage_timeout_s": 600})
        served = tmp_path / "served.yaml"
        served.write_text(yaml.safe_dump(doc))
        doc["teacher"] = {"signal": {"type": "hidden"}, "backend": {"type": "service", "name": "cli-teacher"}}
        doc["cluster"] = {"address": address}
        run = tmp_path / "run.yaml"
        run.write_text(yaml.safe_dump(doc))

        started = run_cli(["teacher", "serve", str(served), "--name", "cli-teacher", "--address", address], env, CLI_S)
        assert started.returncode == 0, started.stderr
        assert "teacher service 'cli-teacher' is serving with 1 replica(s)" in started.stdout
        again = run_cli(["teacher", "serve", str(served), "--name", "cli-teacher", "--address", address], env, CLI_S)
        assert again.returncode == 2 and "already runs on this cluster" in again.stderr

        trained = run_cli(["run", str(run), "--address", address], env, CLI_S)
        assert trained.returncode == 0, trained.stderr
        assert "finished: 2 steps" in trained.stdout

        listed = run_cli(["teacher", "status", "--address", address], env, CLI_S)
        assert listed.stdout.split() == ["cli-teacher"]
        status = json.loads(run_cli(["teacher", "status", "cli-teacher", "--address", address], env, CLI_S).stdout)
        assert status["constructions"] == 1 and list(status["served"].values()) == [2], status

        stopped = run_cli(["teacher", "stop", "cli-teacher", "--address", address], env, CLI_S)
        assert stopped.returncode == 0 and "stopped (2 actor(s))" in stopped.stdout
        gone = run_cli(["teacher", "status", "cli-teacher", "--address", address], env, CLI_S)
        assert gone.returncode == 2 and "no teacher service named 'cli-teacher'" in gone.stderr
        missing = run_cli(["run", str(run), "--address", address, "--run-dir", str(tmp_path / "run2")], env, CLI_S)
        assert missing.returncode != 0 and "teacher service 'cli-teacher' is not running" in missing.stderr
    finally:
        cluster.stop()
