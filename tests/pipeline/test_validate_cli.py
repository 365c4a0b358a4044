"""`tip-ray validate` offline: hub models and datasets it cannot check without a download are
reported as unchecked (with the reason) instead of failing; `--strict` insists and honours
HF_HUB_OFFLINE; sweep files are recognised and validated as sweeps."""

from __future__ import annotations

import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.cli import main


def write(tmp_path, doc, name="p.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def hub_doc(tiny_pair, demo_prompts, tmp_path):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    doc["models"] = {"student": {"type": "hub", "name": "tip-ray-tests/no-such-student"},
                     "teacher": {"type": "hub", "name": "tip-ray-tests/no-such-teacher"}}
    return doc


def test_uncached_hub_models_are_reported_unchecked(tiny_pair, demo_prompts, tmp_path, capsys):
    code = main(["validate", write(tmp_path, hub_doc(tiny_pair, demo_prompts, tmp_path))])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "256 prompt rows read" in out
    assert "unchecked: models.student: hub model 'tip-ray-tests/no-such-student' is not in the local" in out
    assert "models.teacher: hub model 'tip-ray-tests/no-such-teacher'" in out and "--strict" in out



def test_demo_models_not_built_are_reported_unchecked_without_a_bootstrap(tiny_pair, demo_prompts, tmp_path,
                                                                          capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # no demo models cached
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    doc["models"] = {"student": {"type": "demo", "role": "student"}, "teacher": {"type": "demo", "role": "teacher"}}
    code = main(["validate", write(tmp_path, doc)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "unchecked: models.student: the demo models are not built yet" in out
    assert "models.teacher: the demo models are not built yet" in out
    assert not (tmp_path / "empty-cache" / "tip-ray").exists()  # checking never starts the bootstrap


def test_real_errors_still_fail_offline(tiny_pair, demo_prompts, tmp_path, capsys):
    doc = hub_doc(tiny_pair, demo_prompts, tmp_path)
    doc["data"]["path"] = str(tmp_path / "missing.jsonl")
    assert main(["validate", write(tmp_path, doc)]) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_strict_insists_and_honours_hf_hub_offline(tiny_pair, demo_prompts, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["validate", "--strict", write(tmp_path, hub_doc(tiny_pair, demo_prompts, tmp_path))])
    err = capsys.readouterr().err
    assert code == 2 and "models.student: hub model 'tip-ray-tests/no-such-student' is not in the local" in err
    assert "HF_HUB_OFFLINE=1" in err


def test_local_pipeline_is_checked_in_full(tiny_pair, demo_prompts, tmp_path, capsys):
    code = main(["validate", write(tmp_path, tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run"))])
    out = capsys.readouterr().out
    assert code == 0 and "256 prompts (0 bad rows skipped" in out and "unchecked" not in out


def test_a_sweep_file_is_validated_as_a_sweep(tiny_pair, demo_prompts, tmp_path, capsys):
    write(tmp_path, tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run"), "base.yaml")
    sweep = {"sweep": {"base": "base.yaml", "seeds": [0, 1], "report_dir": str(tmp_path / "report"),
                       "runs": [{"label": "all", "rule": {"type": "all"}},
                                {"label": "soft", "rule": {"type": "soft_or", "ratio": 0.5}}]}}
    code = main(["validate", write(tmp_path, sweep, "sweep.yaml")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "valid sweep: 2 variant(s) x 2 seed(s) = 4 runs of base pipeline 'tiny'" in out and "256 prompts" in out
    assert not (tmp_path / "report").exists()
    sweep["sweep"]["runs"][1]["rule"]["ratio"] = 2
    assert main(["validate", write(tmp_path, sweep, "sweep.yaml")]) == 2
    err = capsys.readouterr().err
    assert "ratio" in err and "name: required key is missing" not in err


def test_unknown_key_message_reads_as_what_it_means(tiny_pair, demo_prompts, tmp_path, capsys):
    doc = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    doc["train"]["stepz"] = 3
    assert main(["validate", "--schema-only", write(tmp_path, doc)]) == 2
    err = capsys.readouterr().err
    assert "train.stepz: unknown key; did you mean 'steps'? (the keys allowed here are: " in err
