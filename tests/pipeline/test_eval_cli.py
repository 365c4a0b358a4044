"""`tip-ray eval` on a real tiny model through the rollout backend."""

from __future__ import annotations

import json

from tip_ray.cli import main


def test_eval_reports_mean_and_pass_at_k(tiny_pair, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(["eval", "--model", str(tiny_pair.student_path), "--benchmark", "demo", "--limit", "5",
                 "-n", "4", "--temperature", "1.0", "--max-new-tokens", "12", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "mean@4 =" in printed and "pass@4 =" in printed
    report = json.loads(out.read_text())
    assert report["summary"]["num_problems"] == 5 and report["summary"]["n"] == 4
    samples = report["samples"]
    assert len(samples) == 5 and all(len(s["responses"]) == 4 for s in samples)
    # mean@n is the average share of correct samples: recompute it from the samples written.
    expected = sum(sum(s["correct"]) / 4 for s in samples) / 5
    assert abs(report["summary"]["mean@4"] - expected) < 1e-12


def test_eval_of_a_missing_model_is_a_clear_error(tmp_path, capsys):
    code = main(["eval", "--model", str(tmp_path / "nothing")])
    assert code == 2
    assert "neither a model folder" in capsys.readouterr().err


def test_eval_on_math500_from_the_shared_copy(tiny_pair, tmp_path, capsys):
    import pytest

    from tests.conftest import SHARED

    data = SHARED / "data"
    if not (data / "math500.jsonl").is_file():
        pytest.skip(f"{data} is absent (the MATH-500 copy lives beside the repository, not in it)")
    out = tmp_path / "report.json"
    code = main(["eval", "--model", str(tiny_pair.student_path), "--benchmark", "math500", "--path", str(data),
                 "--limit", "3", "--max-new-tokens", "6", "--chat-template", "never", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["summary"]["num_problems"] == 3
    assert [s["id"] for s in report["samples"]][0] == "test/precalculus/807.json"
    # A random-weight character model cannot write a boxed answer: every grade is False.
    assert report["summary"]["mean@1"] == 0.0
