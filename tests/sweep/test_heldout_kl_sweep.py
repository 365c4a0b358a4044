"""A sweep measured by the held-out reverse KL to the teacher (real pairs have no checker): the
spec's checks, the report's KL columns and pairing, and the untrained student measured once per seed."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config import ConfigError
from tip_ray.sweep.report import group, mean_std, paired_kl_table, table, write_report
from tip_ray.sweep.runner import RunRecord, read_results
from tip_ray.sweep.spec import load_sweep


def kl_record(label, seed, before, after, tokens=100):
    return RunRecord(label=label, rule=label, ratio=0.5, seed=seed, initial_accuracy=None, final_accuracy=None,
                     tokens_trained=tokens, response_tokens=2 * tokens, peak_learner_mib=100.0, wall_seconds=10.0,
                     quadrant_shares={"q1": 0.4, "q2": 0.1, "q3": 0.1, "q4": 0.4}, curve=[],
                     initial_kl=before, final_kl=after)


def test_kl_pairing_within_each_seed_and_share_of_the_reduction():
    records = [kl_record("all", 0, 1.6, 1.2), kl_record("all", 1, 1.5, 1.3),
               kl_record("q3", 0, 1.6, 1.4, 20), kl_record("q3", 1, 1.5, 1.35, 20), kl_record("q3", 2, 1.7, 1.0, 20)]
    lines = paired_kl_table(group(records, ["all", "q3"]), "all")
    # Seed 2 has no baseline run: left out. Δ = +0.2, +0.05 nats; reductions 0.2 and 0.15 against 0.4 and 0.2.
    m, sd = mean_std([0.2, 0.05])
    se = sd / 2 ** 0.5
    share = ((1.6 - 1.4) + (1.5 - 1.35)) / ((1.6 - 1.2) + (1.5 - 1.3))
    assert lines[2] == f"| q3 | 50% | +0.200 (s0) / +0.050 (s1) | {m:+.3f} ± {sd:.3f} | {se:.3f} | {share:.0%} |"
    assert f"{share:.0%}" == "58%"


def test_table_shows_kl_columns_and_no_accuracy_when_none_was_measured():
    records = [kl_record("all", 0, 1.6, 1.2), kl_record("all", 1, 1.5, 1.3)]
    lines = table(group(records, ["all"]))
    assert "accuracy" not in lines[0] and "held-out reverse KL before" in lines[0]
    m, sd = mean_std([1.2, 1.3])
    assert lines[2].startswith(f"| all | 2 | {1.55:.3f} | {m:.3f} ± {sd:.3f} | 100 |")
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|")


def test_report_of_a_kl_sweep_and_results_read_back(tmp_path):
    records = [kl_record("all", 0, 1.6, 1.2), kl_record("half", 0, 1.6, 1.25, 50)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r.__dict__) + "\n" for r in records))
    assert read_results(tmp_path / "results.jsonl") == records
    text = write_report(records, ["all", "half"], tmp_path, command="x", token_map=None).read_text()
    assert "Held-out reverse KL paired by seed" in text and "+0.050 (s0)" in text
    assert "accuracy_vs_tokens.png" not in text and not (tmp_path / "accuracy_vs_tokens.png").exists()


def _sweep(tmp_path, base_doc, heldout: dict, set_keys: dict | None = None):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base_doc))
    sweep = {"sweep": {"base": "base.yaml", "seeds": [0], "runs": [{"label": "all", "rule": {"type": "all"}}],
                       "report_dir": str(tmp_path / "report"), "runs_dir": str(tmp_path / "runs"),
                       "set": {"train.steps": 2, **(set_keys or {})}, "heldout_kl": heldout}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return tmp_path / "sweep.yaml"


def test_heldout_settings_are_checked_before_anything_runs(tiny_pair, demo_prompts, tmp_path):
    base = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"heldout_kl.prompts: .*missing.jsonl is not a file"):
        load_sweep(_sweep(tmp_path, base, {"prompts": str(tmp_path / "missing.jsonl")}))
    with pytest.raises(ConfigError, match="needs a string field 'question'"):
        load_sweep(_sweep(tmp_path, base, {"prompts": str(demo_prompts), "field": "question"}))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "1+1"}\n{not json\n')
    with pytest.raises(ConfigError, match=r"broken.jsonl:2: not JSON"):
        load_sweep(_sweep(tmp_path, base, {"prompts": str(broken)}))
    with pytest.raises(ConfigError, match="set checkpoint.export_hf: true"):
        load_sweep(_sweep(tmp_path, base, {"prompts": str(demo_prompts), "field": "prompt"},
                          {"checkpoint.export_hf": False}))


def test_the_untrained_student_is_measured_once_per_seed(tiny_pair, demo_prompts, tmp_path):
    from tip_ray.sweep.heldout import HeldoutKLMeasure

    base = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    loaded = load_sweep(_sweep(tmp_path, base, {"prompts": str(demo_prompts), "field": "prompt", "num_prompts": 3,
                                                "max_new_tokens": 6}))
    (tmp_path / "report").mkdir()
    config = loaded.run_config(loaded.spec.runs[0], 0)
    measure = HeldoutKLMeasure(loaded.spec.heldout_kl, config, loaded.report_dir)
    first = measure.before(0)
    assert first > 0  # two different random models
    assert measure.before(0) == first
    # A new sweep process (after an interruption) reads it back instead of measuring again.
    again = HeldoutKLMeasure(loaded.spec.heldout_kl, config, loaded.report_dir)
    again._measure = lambda *a: pytest.fail("measured again")
    assert again.before(0) == first
    # The teacher against itself is at distance zero: `after` measures the folder it is given.
    assert abs(measure.after(tiny_pair.teacher_path, 0) - 0.0) < 1e-9
