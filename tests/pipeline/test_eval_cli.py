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
