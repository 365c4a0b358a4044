"""A non-editable install works outside its checkout: a wheel built from this tree, installed into
a fresh venv that sees the dependencies but not the checkout, runs a pipeline with includes from
an unrelated working directory, and its run folder lands there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]


def run(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding the wheel; the dependencies come from this interpreter's
    site-packages through a .pth line (which, unlike a site folder, runs none of its .pth files,
    so the editable install of the checkout stays invisible)."""
    root = tmp_path_factory.mktemp("install")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         str(root / "wheel"), str(CHECKOUT)], cwd=root)
    wheel = next((root / "wheel").glob("tip_ray-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        modules = {n for n in archive.namelist() if n.startswith("tip_ray/") and n.endswith(".py")}
    # An in-tree build reuses build/lib: a module deleted from the tree would linger in the wheel.
    assert modules == {str(p.relative_to(CHECKOUT)) for p in (CHECKOUT / "tip_ray").rglob("*.py")}, (
        "the wheel's modules differ from the checkout's: remove the stale build/ folder")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
    (Path(purelib.stdout.strip()) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)], cwd=root)
    return venv / "bin"


def test_the_installed_package_is_not_the_checkout(installed, tmp_path):
    where = run([str(installed / "python"), "-c", "import tip_ray; print(tip_ray.__file__)"], cwd=tmp_path)
    module = Path(where.stdout.strip())
    assert not module.is_relative_to(CHECKOUT) and module.is_relative_to(installed.parent)
    assert (module.parent / "_shipped" / "configs" / "selection" / "soft_or_50.yaml").is_file()
    # Every shipped pipeline validates from an unrelated folder (includes resolve inside the wheel).
    for name in ("demo", "pipelines/demo_server_teacher.yaml", "paper/qwen3_8b_to_4b_soft_or_50"):
        done = run([str(installed / "tip-ray"), "validate", name, "--schema-only"], cwd=tmp_path)
        assert "valid pipeline" in done.stdout


def test_a_pipeline_with_includes_runs_from_another_folder(installed, tmp_path, tiny_pair, demo_prompts):
    project = tmp_path / "project"
    (project / "pieces").mkdir(parents=True)
    (project / "pieces" / "train.yaml").write_text("steps: 2\nseed: 0\nstage_timeout_s: 120\n")
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, Path("unused"), name="outside")
    del doc["logging"]["run_dir"]  # the default, runs/{name}, under the working directory
    doc["train"] = {"include": "pieces/train.yaml"}
    doc["selection"] = {"include": "configs/selection/soft_or_50.yaml"}  # from the wheel's configs/
    (project / "p.yaml").write_text(yaml.safe_dump(doc))
    cwd = tmp_path / "work"
    cwd.mkdir()
    done = run([str(installed / "tip-ray"), "run", str(project / "p.yaml")], cwd=cwd)
    run_dir = cwd / "runs" / "outside"
    assert f"run folder {run_dir}" in done.stdout
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    assert [row["step"] for row in rows] == [1, 2]
    resolved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    assert resolved["selection"]["rule"] == {**resolved["selection"]["rule"], "type": "soft_or", "ratio": 0.5}
    assert not (CHECKOUT / "runs" / "outside").exists()


def test_the_demo_runs_from_another_folder(installed, tmp_path):
    """`tip-ray demo` from the wheel, shortened to two updates and a small evaluation. The demo
    models come from the user cache (~/.cache/tip-ray/demo-v1); where they are not built yet, the
    command builds them first (about 4 minutes on 2 CPU cores), hence the long limit."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    before = set((CHECKOUT / "runs").glob("demo-*")) if (CHECKOUT / "runs").is_dir() else set()
    short = ["train.steps=2", "eval.every_steps=2", "eval.num_problems=16", "checkpoint.every_steps=2"]
    done = run([str(installed / "tip-ray"), "demo", *[a for s in short for a in ("--set", s)]], cwd=cwd, timeout=1500)
    run_dirs = list((cwd / "runs").glob("demo-*"))
    assert len(run_dirs) == 1, f"expected one run folder under {cwd / 'runs'}: {run_dirs}"
    run_dir = run_dirs[0]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    assert [row["step"] for row in rows] == [1, 2]
    table = done.stdout[done.stdout.index("teacher accuracy"):]
    for name in ("student accuracy before", "student accuracy after", "tokens trained on", "peak learner memory"):
        assert name in table, f"{name!r} missing from the demo's table:\n{table}"
    assert "not evaluated" not in table  # evaluated before the first and after the last update
    folder_line = next(line for line in table.splitlines() if line.strip().startswith("run folder"))
    assert Path(folder_line.split()[-1]).resolve() == run_dir.resolve()
    after = set((CHECKOUT / "runs").glob("demo-*")) if (CHECKOUT / "runs").is_dir() else set()
    assert after == before, "the demo wrote into the checkout"
