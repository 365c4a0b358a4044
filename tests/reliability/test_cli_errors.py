"""The command line's error policy, over every subcommand: a user error (bad config, bad data,
bad path, missing model, unreachable cluster) ends with one `tip-ray: error: ...` line, secrets
masked, and a non-zero exit; never a Python traceback, unless `--debug` asks for one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.cli import COMMANDS, build_parser, main

SECRET = "hf_cli0123456789abcdefSECRET"


def user_error(argv: list[str], capsys) -> str:
    """Run the CLI in this process: it must fail with one error line, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, err
    assert err.count("tip-ray: error:") == 1, err
    assert "Traceback" not in err and "unexpected" not in err, err
    return err


def pipeline_file(tmp_path: Path, doc: dict | str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def good_doc(tiny_pair, demo_prompts, tmp_path) -> dict:
    return tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")


def bad_pipelines(tmp_path: Path, good: dict) -> dict[str, tuple[str, str]]:
    """name: (pipeline file, what the error must say)."""
    no_data = {**good, "data": {**good["data"], "path": str(tmp_path / "missing.jsonl")}}
    no_model = {**good, "models": {**good["models"], "student": {"type": "local", "path": str(tmp_path / "gone")}}}
    bad_rows = tmp_path / "bad.jsonl"
    bad_rows.write_bytes(b'{"prompt": "1+\\ud800="}\n')
    bad_data = {**good, "data": {**good["data"], "path": str(bad_rows)}}
    return {
        "missing-file": (str(tmp_path / "nope.yaml"), "file not found"),
        "bad-yaml": (pipeline_file(tmp_path, "name: [oops\n", "y.yaml"), "not valid YAML"),
        "bad-number": (pipeline_file(tmp_path, {**good, "train": {"steps": True}}, "n.yaml"), "train.steps"),
        "missing-data": (pipeline_file(tmp_path, no_data, "d.yaml"), "missing.jsonl"),
        "bad-data": (pipeline_file(tmp_path, bad_data, "b.yaml"), "bad.jsonl:1"),
        "missing-model": (pipeline_file(tmp_path, no_model, "m.yaml"), "models.student"),
        "ftp-cluster": (pipeline_file(tmp_path, {**good, "cluster": {"address": "ftp://x"}}, "c.yaml"), "not a Ray address"),
    }


def test_run_and_validate_refuse_every_kind_of_bad_input(good_doc, tmp_path, capsys):
    import ray

    was_running = ray.is_initialized()
    for name, (path, says) in bad_pipelines(tmp_path, good_doc).items():
        for argv in (["validate", path], ["run", path], ["demo", "--pipeline", path, "--run-dir", str(tmp_path / "d")]):
            if name in ("missing-data", "bad-data", "missing-model") and argv[0] == "demo":
                continue  # demo bootstraps its own models first; its config errors are covered above
            assert says in user_error(argv, capsys), (name, argv)
    assert ray.is_initialized() == was_running, "a refused command started Ray"


def test_unusable_addresses_are_named(good_doc, tmp_path, capsys):
    path = pipeline_file(tmp_path, good_doc)
    assert "not a Ray address" in user_error(["run", path, "--address", "ftp://x"], capsys)
    assert "dashboard URL" in user_error(["run", path, "--address", "http://head:8265"], capsys)
    assert "not a Ray address" in user_error(["sweep", "pipelines/sweeps/demo_rules.yaml", "--address", "ftp://x"], capsys)
    for argv in (["status", "job1"], ["logs", "job1"], ["stop", "job1"]):
        assert "not a scheme it speaks" in user_error([*argv, "--address", "ftp://x"], capsys)
    assert "is not a scheme" not in user_error(["status", "job1"], capsys)  # no address at all


def test_unreachable_cluster_is_one_clear_error(good_doc, tmp_path, capsys):
    """Ray itself would retry an address where nothing listens for minutes: the run fails at
    once, naming the address."""
    # Its own process: in this one an earlier test's Ray may be running, which a run would join.
    path = pipeline_file(tmp_path, good_doc)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tip_ray.cli", "run", path, "--address", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=300)
    err = done.stderr
    assert done.returncode != 0 and err.count("tip-ray: error:") == 1 and "Traceback" not in err, err
    assert "cannot reach the Ray cluster at '127.0.0.1:1'" in err and "--address local" in err
    assert time.monotonic() - started < 120, "an unreachable cluster must fail fast"


def test_eval_refuses_bad_models_and_flags(tmp_path, capsys):
    no_weights = tmp_path / "half-written"
    no_weights.mkdir()
    (no_weights / "config.json").write_text("{}")
    assert "no weights" in user_error(["eval", "--model", str(no_weights)], capsys)
    assert "neither a model folder" in user_error(["eval", "--model", str(tmp_path / "none")], capsys)
    err = user_error(["eval", "--model", str(no_weights), "--limit", "-1", "-n", "0"], capsys)
    assert "--limit -1" in err and "-n/--samples 0" in err
    assert "--batch-size" in user_error(["eval", "--model", str(no_weights), "--batch-size", "0"], capsys)
    assert "--out" in user_error(["eval", "--model", str(no_weights), "--out", str(tmp_path / "no" / "r.json")], capsys)


def test_eval_refuses_damaged_weights(tiny_pair, tmp_path, capsys):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_pair.student_path, damaged)
    for weights in damaged.glob("*.safetensors"):
        weights.write_bytes(b"\x00" * 100)
    err = user_error(["eval", "--model", str(damaged), "--limit", "1"], capsys)
    assert f"cannot load the model in {damaged}" in err


def test_sweep_refuses_bad_files(tmp_path, capsys):
    assert "file not found" in user_error(["sweep", str(tmp_path / "nope.yaml")], capsys)
    bad = pipeline_file(tmp_path, "sweep:\n  base: nothere.yaml\n  seeds: [true]\n  runs: [{label: a, rule: {type: all}}]\n  report_dir: r\n", "s.yaml")
    assert "seeds: expected a number, got the boolean true" in user_error(["sweep", bad], capsys)


def test_submit_refuses_a_bad_address(capsys):
    err = user_error(["submit", "pipelines/demo.yaml", "--address", "ftp://x"], capsys)
    assert "not a scheme it speaks" in err


def test_report_refuses_what_is_not_a_run_folder(tmp_path, capsys):
    assert "is not a folder" in user_error(["report", str(tmp_path / "missing")], capsys)
    (tmp_path / "empty").mkdir()
    assert "holds none of" in user_error(["report", str(tmp_path / "empty")], capsys)


def test_models_refuses_missing_files_and_bad_layer_lists(tmp_path, capsys):
    missing = str(tmp_path / "no-such.gguf")
    assert "no-such.gguf" in user_error(["models", "convert", missing], capsys)
    assert "no-such.gguf" in user_error(["models", "prune", missing, "--keep-every", "2"], capsys)
    assert user_error(["models", "prune", missing, "--keep-layers", "0,x"], capsys)


def test_example_refuses_a_missing_pipeline(tmp_path, capsys):
    assert "not found" in user_error(["example", "--pipeline", str(tmp_path / "none.yaml")], capsys)


def test_teacher_refuses_bad_names_counts_and_addresses(tmp_path, capsys):
    assert "--name" in user_error(["teacher", "serve", "pipelines/demo.yaml", "--name", "a b/c"], capsys)
    assert "--replicas must be at least 1" in user_error(
        ["teacher", "serve", "pipelines/demo.yaml", "--name", "t", "--replicas", "0"], capsys)
    assert "file not found" in user_error(["teacher", "serve", str(tmp_path / "none.yaml"), "--name", "t"], capsys)
    assert "lives on a running Ray cluster" in user_error(["teacher", "status", "--address", "local"], capsys)


def test_every_subcommand_is_covered_by_this_file():
    """A new subcommand must be added to the tests above."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    covered = {"run", "validate", "demo", "eval", "sweep", "submit", "status", "logs", "stop", "report", "models", "example",
               "teacher"}
    assert set(sub.choices) == covered, set(sub.choices) ^ covered
    assert set(COMMANDS) <= covered | {"jobs"}


def test_error_messages_mask_secrets(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    folder = tmp_path / f"leak-{SECRET}"
    err = user_error(["validate", str(folder / "p.yaml")], capsys)
    assert SECRET not in err and "leak-***" in err


def test_an_unexpected_failure_is_one_line_and_debug_shows_it(monkeypatch, capsys):
    import tip_ray.commands.validate as validate

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(validate, "handle", broken)
    code = main(["validate", "x.yaml"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "unexpected KeyError" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "validate", "x.yaml"])


def test_the_installed_entry_point_follows_the_policy(tmp_path):
    """The real process: exit code, one line, and the traceback only with --debug."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    command = [sys.executable, "-m", "tip_ray.cli"]
    plain = subprocess.run([*command, "validate", str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                           cwd=REPO, env=env, timeout=120)
    assert plain.returncode == 2 and plain.stderr.strip().startswith("tip-ray: error:") and "Traceback" not in plain.stderr
    debug = subprocess.run([*command, "--debug", "validate", str(tmp_path / "nope.yaml")], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_the_finished_line_masks_secrets(monkeypatch, tmp_path):
    from tip_ray.commands.run import finished_line
    from tip_ray.pipeline.summary import RunSummary

    monkeypatch.setenv("HF_TOKEN", SECRET)
    summary = RunSummary(run_dir=tmp_path / f"runs/leak-{SECRET}", steps=2, final_loss=0.5, tokens_trained=10,
                         response_tokens=20, peak_learner_mib=100.0, wall_seconds=3.0, evals=(), final_model=None,
                         resumed_from=1, resumes=1)
    line = finished_line(f"leak-{SECRET}", summary)
    assert SECRET not in line and line.startswith("run 'leak-***' finished: 2 steps") and "runs/leak-***" in line


@pytest.mark.slow
def test_the_final_line_of_a_run_is_masked(ray_local, tiny_pair, demo_prompts, monkeypatch, tmp_path, capsys):
    """A run whose name holds a secret's value (say, pasted by mistake) prints it masked."""
    monkeypatch.setenv("HF_TOKEN", SECRET)
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run", name=f"leak-{SECRET}",
                            train={"steps": 1, "seed": 0, "stage_timeout_s": 120})
    code = main(["run", pipeline_file(tmp_path, doc)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert SECRET not in out and SECRET not in err
    assert "run 'leak-***' finished: 1 steps" in out.strip().splitlines()[-1]
