"""What a submitted run is: the entrypoint, the runtime environment that carries the project and
the pipeline YAML, and a readable job id. Planning is pure (no Ray, no network), so it is
checked before anything is uploaded.

The job runs ``python -m tip_ray.cli run <yaml> --address auto`` in the shipped project folder
(Ray's ``working_dir``), so the pipeline's includes and relative data paths resolve there just
as they do locally, and the cluster runs the project's code as it is on disk now.
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tip_ray.jobs.errors import JobsError

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".venv*",
    "/runs",
    ".git",
    "/benchmarks/results",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".hypothesis",
    "*.egg-info",
    "/build",
    "/dist",
)
"""Left out of the upload (gitignore syntax, as Ray's runtime_env ``excludes``): virtual
environments, run folders and results are large and belong to this machine. A leading slash
anchors a pattern at the shipped folder, and naming the folder itself (no trailing slash)
keeps Ray from walking into it at all."""

PROJECT_MARKERS = ("tip_ray/__init__.py", "pyproject.toml")
"""A folder holding one of these is a project root: the default folder to ship."""

JOB_ENV = {"PYTHONUNBUFFERED": "1"}  # the run's progress reaches the log stream as it happens


@dataclass(frozen=True)
class JobPlan:
    """One run, ready to hand to the Jobs API."""

    submission_id: str
    """The job id the cluster will know the run by."""
    entrypoint: str
    """Shell command run by the job, in the shipped folder."""
    runtime_env: dict[str, Any]
    """Ray runtime environment: working_dir, excludes, env_vars."""
    metadata: dict[str, str]
    """Shown with the job on the dashboard and in `tip-ray status`."""
    pipeline_name: str
    working_dir: Path
    pipeline_in_job: str
    """The pipeline YAML's path relative to working_dir (POSIX)."""
    notes: tuple[str, ...]
    """Things the user should know before the run starts (paths that will not travel)."""


def find_project_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds a `PROJECT_MARKERS` entry."""
    for folder in (start, *start.parents):
        if any((folder / marker).is_file() for marker in PROJECT_MARKERS):
            return folder
    return None


def default_submission_id(pipeline_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", pipeline_name.lower()).strip("-")[:40] or "run"
    return f"tip-ray-{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _path_notes(config, working_dir: Path) -> list[str]:
    """Local paths in the config that the job may not find on the cluster."""
    from tip_ray.config.models import LocalModel

    named: list[tuple[str, str]] = []
    if hasattr(config.data, "path"):
        named.append(("data.path", config.data.path))
    for role in ("student", "teacher", "tokenizer"):
        source = getattr(config.models, role)
        if isinstance(source, LocalModel):
            named.append((f"models.{role}.path", source.path))
    notes = []
    for key, text in named:
        path = Path(text).expanduser()
        if path.is_absolute():
            inside = path.resolve().is_relative_to(working_dir)
            if not inside:
                notes.append(f"{key} {text} is outside the shipped folder: it must exist at that path on the cluster")
        elif not (working_dir / path).exists():
            notes.append(
                f"{key} {text} is not in the shipped folder {working_dir}: the job looks for it "
                "there (relative to the folder) and will fail if the cluster has no such path"
            )
    return notes


def plan_job(
    pipeline: str | Path,
    overrides: Sequence[str] = (),
    *,
    working_dir: str | Path | None = None,
    run_dir: str | None = None,
    submission_id: str | None = None,
    excludes: Sequence[str] = (),
) -> JobPlan:
    """Validate the pipeline with its overrides (as `tip-ray run` would) and plan the job.

    `working_dir` defaults to the project folder holding the YAML; the YAML must lie inside it,
    so that it travels with the upload. `excludes` adds to `DEFAULT_EXCLUDES`.
    Raises ConfigError for a bad pipeline and JobsError for a YAML outside the shipped folder.
    """
    from tip_ray.config.loader import deep_merge, load_pipeline, parse_override

    yaml_path = Path(pipeline).expanduser().resolve()
    merged: dict = {}
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    config = load_pipeline(yaml_path, merged or None)  # fails here, not on the cluster

    if working_dir is not None:
        root = Path(working_dir).expanduser().resolve()
        if not root.is_dir():
            raise JobsError(f"--working-dir {working_dir}: not a folder")
    else:
        root = find_project_root(yaml_path.parent) or Path.cwd().resolve()
    if not yaml_path.is_relative_to(root):
        raise JobsError(
            f"{yaml_path} is outside the folder that is shipped with the job ({root}); move the "
            "pipeline under the project (e.g. pipelines/) or pass --working-dir with a folder "
            "that holds it and the files it includes"
        )
    in_job = yaml_path.relative_to(root).as_posix()

    command = ["python", "-m", "tip_ray.cli", "run", in_job, "--address", "auto"]
    if run_dir:
        command += ["--run-dir", run_dir]
    for text in overrides:
        command += ["--set", text]
    runtime_env = {
        "working_dir": str(root),
        "excludes": [*DEFAULT_EXCLUDES, *excludes],
        "env_vars": dict(JOB_ENV),
    }
    return JobPlan(
        submission_id=submission_id or default_submission_id(config.name),
        entrypoint=shlex.join(command),
        runtime_env=runtime_env,
        metadata={"tip_ray_pipeline": config.name, "tip_ray_yaml": in_job},
        pipeline_name=config.name,
        working_dir=root,
        pipeline_in_job=in_job,
        notes=tuple(_path_notes(config, root)),
    )
