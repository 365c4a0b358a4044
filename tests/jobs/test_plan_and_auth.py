"""Planning a submission and choosing its token, without a cluster: the pieces the cluster tests
cannot vary cheaply (every token source, every refusal message, what the upload holds)."""

from __future__ import annotations

import shlex
import zipfile

import pytest
import yaml

from tests.jobs.conftest import REPO
from tip_ray.config.loader import ConfigError
from tip_ray.jobs.auth import ClusterToken, cleartext_warning, explain_rejection, find_token, is_loopback
from tip_ray.jobs.client import resolve_address
from tip_ray.jobs.errors import JobsAuthError, JobsError
from tip_ray.jobs.submit import plan_job

# --------------------------------------------------------------------------- token sources


@pytest.fixture
def home(tmp_path):
    folder = tmp_path / "home"
    (folder / ".ray").mkdir(parents=True)
    return folder


def write(path, text):
    path.write_text(text)
    return path


def test_token_sources_in_order(tmp_path, home):
    flag = write(tmp_path / "flag.token", "from-flag\n")
    env_file = write(tmp_path / "env.token", "  from-path  \n")
    write(home / ".ray" / "auth_token", "from-default")
    full = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(env_file)}

    assert find_token(flag, full, home) == ClusterToken("from-flag", f"--token-file {flag}")
    assert find_token(None, full, home) == ClusterToken("from-env", "RAY_AUTH_TOKEN")
    without_env = {k: v for k, v in full.items() if k != "RAY_AUTH_TOKEN"}
    assert find_token(None, without_env, home) == ClusterToken("from-path", f"RAY_AUTH_TOKEN_PATH={env_file}")
    only_mode = {"RAY_AUTH_MODE": "token"}
    found = find_token(None, only_mode, home)
    assert found.value == "from-default" and "the default token file" in found.source


def test_default_token_file_needs_token_mode(home):
    write(home / ".ray" / "auth_token", "a local ray's token")
    assert find_token(None, {}, home) is None
    assert find_token(None, {"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "x"}, home) is None


def test_explicit_flag_wins_over_disabled_mode(tmp_path, home):
    flag = write(tmp_path / "t", "abc")
    assert find_token(flag, {"RAY_AUTH_MODE": "disabled"}, home).value == "abc"


@pytest.mark.parametrize(
    ("flag_text", "environ", "expected"),
    [
        (None, {"RAY_AUTH_MODE": "token"}, "RAY_AUTH_MODE=token is set but no token was found"),
        ("", {}, "the token file is empty"),
        (None, {"RAY_AUTH_TOKEN_PATH": "/nonexistent/tip-ray.token"}, "RAY_AUTH_TOKEN_PATH=/nonexistent/tip-ray.token: no such file"),
    ],
)
def test_unusable_token_sources_fail_before_any_request(tmp_path, home, flag_text, environ, expected):
    flag = write(tmp_path / "t", flag_text) if flag_text is not None else None
    with pytest.raises(JobsAuthError) as err:
        find_token(flag, environ, home)
    assert expected in str(err.value)
    assert "disabled" not in str(err.value)


def test_token_value_stays_out_of_repr():
    token = ClusterToken("s3cr3t-value", "RAY_AUTH_TOKEN")
    assert "s3cr3t" not in repr(token)
    assert token.headers() == {"Authorization": "Bearer s3cr3t-value"}


# --------------------------------------------------------------------------- refusal messages


def test_rejection_messages_name_the_source_and_the_fix(home):
    wrong = ClusterToken("x", "RAY_AUTH_TOKEN_PATH=/home/me/.ray/prod.token")
    forbidden = explain_rejection(403, "http://h:8265", wrong, "Forbidden: Invalid authentication token", {}, home)
    assert "rejected the token from RAY_AUTH_TOKEN_PATH=/home/me/.ray/prod.token" in forbidden
    assert "HTTP 403: Forbidden: Invalid authentication token" in forbidden
    assert "--token-file FILE" in forbidden and "kubectl get secret" in forbidden
    assert "disabled" not in forbidden

    missing = explain_rejection(401, "http://h:8265", None, "Unauthorized", {}, home)
    assert "requires an authentication token (HTTP 401: Unauthorized) and none was sent" in missing
    assert "auth_token exists" not in missing  # the home has no default token file here
    assert "disabled" not in missing

    off = explain_rejection(401, "http://h:8265", None, "", {"RAY_AUTH_MODE": "disabled"}, home)
    assert "RAY_AUTH_MODE=disabled in this shell keeps the client from sending one" in off
    assert "set RAY_AUTH_MODE=token" in off


def test_cleartext_warning_only_for_remote_plain_http():
    token = ClusterToken("x", "RAY_AUTH_TOKEN")
    assert cleartext_warning("http://10.0.0.7:8265", token) is not None
    assert cleartext_warning("https://ray.example.com", token) is None
    assert cleartext_warning("http://127.0.0.1:8265", token) is None
    assert cleartext_warning("http://localhost:8265", token) is None
    assert cleartext_warning("http://10.0.0.7:8265", None) is None
    assert is_loopback("http://[::1]:8265") and not is_loopback("http://ray-head:8265")


def test_address_from_flag_or_environment(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address is not the dashboard
    with pytest.raises(JobsError, match="pass --address http://HOST:8265"):
        resolve_address(None)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.1.2.3:8265/")
    assert resolve_address(None) == "http://10.1.2.3:8265"
    assert resolve_address("http://h:1/") == "http://h:1"


# --------------------------------------------------------------------------- the plan


def test_plan_ships_the_project_and_runs_the_yaml_there():
    plan = plan_job(REPO / "pipelines" / "demo.yaml", ["train.steps=3", "name=demo run"], run_dir="/shared/runs/x",
                    submission_id="job-1")
    assert plan.working_dir == REPO
    assert plan.pipeline_in_job == "pipelines/demo.yaml"
    assert shlex.split(plan.entrypoint) == [
        "python", "-m", "tip_ray.cli", "run", "pipelines/demo.yaml", "--address", "auto",
        "--run-dir", "/shared/runs/x", "--set", "train.steps=3", "--set", "name=demo run",
    ]
    assert plan.runtime_env["working_dir"] == str(REPO)
    assert {".venv*", "/runs", ".git", "/benchmarks/results"} <= set(plan.runtime_env["excludes"])
    assert plan.runtime_env["env_vars"] == {"PYTHONUNBUFFERED": "1"}
    assert plan.metadata == {"tip_ray_pipeline": "demo run", "tip_ray_yaml": "pipelines/demo.yaml"}
    assert plan.submission_id == "job-1"
    assert "RAY_AUTH" not in repr(plan.runtime_env)  # the token never rides in the job


def test_default_job_id_is_readable():
    plan = plan_job(REPO / "pipelines" / "demo.yaml", ["name=Qwen3 8B->4B"])
    assert plan.submission_id.startswith("tip-ray-qwen3-8b-4b-")


def test_bad_overrides_fail_locally():
    with pytest.raises(ConfigError, match="train.steps"):
        plan_job(REPO / "pipelines" / "demo.yaml", ["train.steps=0"])


def test_yaml_outside_the_shipped_folder_is_refused(tmp_path):
    outside = write(tmp_path / "p.yaml", (REPO / "pipelines" / "demo.yaml").read_text())
    with pytest.raises(JobsError, match="outside the folder that is shipped.*--working-dir"):
        plan_job(outside, working_dir=REPO)


def test_paths_that_will_not_travel_are_noted(tmp_path, tiny_pair, demo_prompts):
    from tests.pipeline_doc import tiny_pipeline_doc

    project = tmp_path / "project"
    (project / "pipelines").mkdir(parents=True)
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    doc["data"]["path"] = "data/prompts.jsonl"  # relative, and not in the project
    path = write(project / "pipelines" / "tiny.yaml", yaml.safe_dump(doc))
    write(project / "pyproject.toml", "")
    plan = plan_job(path)
    assert plan.working_dir == project.resolve()
    notes = "\n".join(plan.notes)
    assert "data.path data/prompts.jsonl is not in the shipped folder" in notes
    assert f"models.student.path {tiny_pair.student_path} is outside the shipped folder" in notes


def package_names(plan, tmp_path) -> list[str]:
    """The file names Ray's own packaging puts in the job's upload for `plan`."""
    from ray._private.runtime_env.packaging import create_package

    package = tmp_path / "pkg.zip"
    create_package(plan.runtime_env["working_dir"], package, include_gitignore=True,
                   excludes=plan.runtime_env["excludes"])
    assert package.stat().st_size < 20 * 2**20
    return zipfile.ZipFile(package).namelist()


def test_upload_leaves_out_environments_runs_and_results(tmp_path):
    project = tmp_path / "project"
    for name in ("tip_ray/__init__.py", "tip_ray/runs/keep.py", ".venv/lib/x.py", ".venv-vllm/y.py",
                 ".git/HEAD", "runs/demo/model.safetensors", "benchmarks/results/r.json",
                 "benchmarks/bench.py", "pyproject.toml"):
        write_at = project / name
        write_at.parent.mkdir(parents=True, exist_ok=True)
        write_at.write_text("x")
    (project / "pipelines").mkdir()
    yaml_path = write(project / "pipelines" / "demo.yaml", (REPO / "pipelines" / "demo.yaml").read_text())
    names = package_names(plan_job(yaml_path), tmp_path)
    files = sorted(n for n in names if not n.endswith("/"))
    assert files == ["benchmarks/bench.py", "pipelines/demo.yaml", "pyproject.toml",
                     "tip_ray/__init__.py", "tip_ray/runs/keep.py"]
    assert not [n for n in names if n.startswith(("runs", ".venv", ".git", "benchmarks/results"))]


def test_upload_of_this_project_holds_code_pipelines_and_configs(tmp_path):
    names = package_names(plan_job(REPO / "pipelines" / "demo.yaml"), tmp_path)
    assert {"tip_ray/cli.py", "tip_ray/jobs/submit.py", "pipelines/demo.yaml", "configs/clusters/laptop.yaml"} <= set(names)
    assert not [n for n in names if n.startswith((".git/", ".venv", "runs/"))]
