"""Bad inputs fail before any actor starts, with one clear message, and leave nothing running."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.cli import main


def run_cli(tmp_path, doc, capsys) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    import ray

    was_running = ray.is_initialized()
    actors_before = alive_actors() if was_running else None
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    # Nothing left running: no Ray started by the failed run, and no actor created in one that runs.
    assert ray.is_initialized() == was_running
    if was_running:
        assert alive_actors() == actors_before
    assert err.count("tip-ray: error:") == 1
    return err


def alive_actors() -> int:
    """Alive actors of the Ray this process is connected to (read from its GCS, no dashboard)."""
    import ray

    return sum(1 for a in ray._private.state.actors().values() if a["State"] == "ALIVE")


@pytest.fixture
def doc(tiny_pair, demo_prompts, tmp_path):
    return tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")


def test_misspelled_key(tmp_path, doc, capsys):
    doc["rollout"]["sampling"]["max_new_token"] = 5
    err = run_cli(tmp_path, doc, capsys)
    assert "rollout.sampling.max_new_token" in err and "max_new_tokens" in err


def test_wrong_type(tmp_path, doc, capsys):
    doc["train"]["steps"] = "many"
    assert "train.steps" in run_cli(tmp_path, doc, capsys)


def test_missing_model_path(tmp_path, doc, capsys):
    doc["models"]["teacher"]["path"] = str(tmp_path / "no-such-model")
    err = run_cli(tmp_path, doc, capsys)
    assert "models.teacher.path" in err and "no-such-model" in err


def test_mismatched_vocabularies(tmp_path, doc, capsys):
    from tip_ray.models.tiny import DEFAULT_STUDENT_SPEC, save_tiny_pair

    other = save_tiny_pair(tmp_path / "other", student_spec=DEFAULT_STUDENT_SPEC, alphabet="0123456789+=")
    doc["models"]["teacher"]["path"] = str(other.teacher_path)
    err = run_cli(tmp_path, doc, capsys)
    assert "vocabulary sizes differ" in err


def test_empty_dataset(tmp_path, doc, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    doc["data"]["path"] = str(empty)
    assert "no usable rows" in run_cli(tmp_path, doc, capsys)


def test_row_missing_the_prompt_field(tmp_path, doc, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "12+34="}) + "\n" + json.dumps({"question": "1+1="}) + "\n")
    doc["data"]["path"] = str(data)
    err = run_cli(tmp_path, doc, capsys)
    assert "rows.jsonl:2" in err and "missing prompt field 'prompt'" in err
