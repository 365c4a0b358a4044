"""Sweeps: the spec validates every variant up front, runs share one Ray session, and the report
aggregates over seeds."""

from __future__ import annotations

import pytest
import yaml

from tests.pipeline_doc import tiny_pipeline_doc
from tip_ray.config import ConfigError
from tip_ray.sweep.report import mean_std, table, group
from tip_ray.sweep.runner import RunRecord
from tip_ray.sweep.spec import load_sweep


def write_sweep(tmp_path, base_doc, runs, seeds=(0,)):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base_doc))
    sweep = {"sweep": {"base": "base.yaml", "seeds": list(seeds), "runs": runs,
                       "report_dir": str(tmp_path / "report"), "runs_dir": str(tmp_path / "runs"), "set": {"train.steps": 2}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return tmp_path / "sweep.yaml"


def test_a_bad_variant_fails_before_anything_runs(tiny_pair, demo_prompts, tmp_path):
    base = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    path = write_sweep(tmp_path, base, [{"label": "a", "rule": {"type": "soft_or", "ratio": 2.0}}])
    with pytest.raises(ConfigError, match="ratio must be in"):
        load_sweep(path)
    path = write_sweep(tmp_path, base, [{"label": "a", "rule": {"type": "all"}}, {"label": "a", "rule": {"type": "all"}}])
    with pytest.raises(ConfigError, match="repeated: a"):
        load_sweep(path)


def test_variant_replaces_the_base_rule(tiny_pair, demo_prompts, tmp_path):
    base = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")  # soft_or 50%
    loaded = load_sweep(write_sweep(tmp_path, base, [{"label": "q3", "rule": {"type": "q3_only", "ratio": 0.1}}], seeds=(4,)))
    config = loaded.run_config(loaded.spec.runs[0], 4)
    assert config.selection.rule.type == "q3_only" and config.selection.rule.ratio == 0.1
    assert config.train.seed == 4 and config.train.steps == 2


def record(label, seed, before, after, tokens):
    return RunRecord(label=label, rule=label, ratio=0.5, seed=seed, initial_accuracy=before, final_accuracy=after,
                     tokens_trained=tokens, response_tokens=2 * tokens, peak_learner_mib=100.0, wall_seconds=10.0,
                     quadrant_shares={"q1": 0.4, "q2": 0.1, "q3": 0.1, "q4": 0.4}, curve=[(0, before), (tokens, after)])


def test_table_is_mean_and_std_over_seeds():
    records = [record("a", 0, 0.2, 0.5, 100), record("a", 1, 0.2, 0.7, 300), record("b", 0, 0.2, 0.3, 50)]
    lines = table(group(records, ["a", "b"]))
    m, sd = mean_std([0.5, 0.7])
    assert f"| a | 2 | 0.200 | {m:.3f} ± {sd:.3f} | 200 |" in lines[2]
    assert lines[3].startswith("| b | 1 |") and "0.300 ± 0.000" in lines[3]


def test_paired_table_compares_within_each_seed():
    from tip_ray.sweep.report import paired_table

    records = [record("all", 0, 0.5, 0.70, 100), record("all", 1, 0.5, 0.80, 100),
               record("half", 0, 0.5, 0.68, 50), record("half", 1, 0.5, 0.81, 50), record("half", 2, 0.5, 0.99, 50)]
    lines = paired_table(group(records, ["all", "half"]), "all", start=0.5)
    # Seed 2 has no baseline run: left out. Δ = -0.02, +0.01; gain share (0.745 - 0.5) / (0.75 - 0.5).
    m, sd = mean_std([-0.02, 0.01])
    se = (((-0.02 - m) ** 2 + (0.01 - m) ** 2) / 1) ** 0.5 / 2 ** 0.5  # sample std / sqrt(pairs)
    assert f"{se:.3f}" == "0.015"
    assert lines[2] == f"| half | 50% | -0.020 (s0) / +0.010 (s1) | {m:+.3f} ± {sd:.3f} | 0.015 | 98% |"
    assert paired_table(group(records, ["all", "half"]), "missing", start=None) == []


def test_regenerating_the_report_keeps_the_hand_written_discussion(tmp_path):
    from tip_ray.sweep.report import DISCUSSION_FILE, write_report

    records = [record("a", 0, 0.2, 0.5, 100), record("a", 1, 0.2, 0.7, 300)]
    (tmp_path / DISCUSSION_FILE).write_text("## Discussion\n\nWhy a beats nothing.\n")
    for _ in range(2):  # a second --report-only run must not drop or repeat it
        text = write_report(records, ["a"], tmp_path, command="tip-ray sweep x", token_map=None).read_text()
        assert text.count("Why a beats nothing.") == 1
        assert text.index("| a | 2 |") < text.index("## Discussion")


def test_token_map_shares_under_each_cut_choice(tmp_path):
    import torch

    from tip_ray.sweep.report import plot_token_map, token_map_table
    from tip_ray.sweep.token_map import QuadrantView, TokenMap

    labels = torch.tensor([1, 1, 2, 3, 4, 4, 4, 4])
    token_map = TokenMap(torch.rand(8), torch.rand(8), (QuadrantView("median", labels, 0.1, 0.2),
                                                        QuadrantView("mid-range", torch.full((8,), 4), 0.5, 3.0)))
    assert token_map_table(token_map)[2:] == ["| median | 0.1 | 0.2 | 25.0% | 12.5% | 12.5% | 50.0% |",
                                              "| mid-range | 0.5 | 3 | 0.0% | 0.0% | 0.0% | 100.0% |"]
    plot_token_map(token_map, tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert _png_size(tmp_path / "map.png") == (2 * 715, 550)  # two views side by side, 6.5 x 5 in at 110 dpi

    five = TokenMap(token_map.entropy, token_map.divergence, token_map.views + token_map.views[:1] * 3)
    plot_token_map(five, tmp_path / "five.png")
    assert _png_size(tmp_path / "five.png") == (3 * 715, 2 * 550)  # a grid of two rows, not five across


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]  # the IHDR chunk's width and height, big-endian
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


@pytest.mark.slow
def test_sweep_runs_and_writes_its_report(ray_local, tiny_pair, demo_prompts, tmp_path):
    from tip_ray.sweep.report import write_report
    from tip_ray.sweep.runner import read_results, run_sweep

    base = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run",
                             eval={"at_start": True, "every_steps": 2, "benchmark": "demo", "num_problems": 4,
                                   "max_new_tokens": 8})
    runs = [{"label": "all", "rule": {"type": "all"}}, {"label": "soft_or-50", "rule": {"type": "soft_or", "ratio": 0.5}}]
    loaded = load_sweep(write_sweep(tmp_path, base, runs))
    records = run_sweep(loaded, log=lambda *_: None)
    assert [(r.label, r.seed) for r in records] == [("all", 0), ("soft_or-50", 0)]
    by = {r.label: r for r in records}
    assert by["all"].tokens_trained == by["all"].response_tokens
    assert by["soft_or-50"].tokens_trained <= by["soft_or-50"].response_tokens / 2
    assert all(r.initial_accuracy is not None and r.final_accuracy is not None for r in records)
    # A second call finds both runs done and redoes nothing.
    assert read_results(loaded.report_dir / "results.jsonl") == run_sweep(loaded, log=lambda *_: None)
    out = write_report(records, ["all", "soft_or-50"], loaded.report_dir, command="tip-ray sweep x", token_map=None)
    text = out.read_text()
    assert "| all | 1 |" in text and "| soft_or-50 | 1 |" in text
    assert (loaded.report_dir / "accuracy_vs_tokens.png").stat().st_size > 1000


def test_fresh_forgets_finished_runs_but_keeps_the_discussion(tiny_pair, demo_prompts, tmp_path):
    from tip_ray.sweep.report import DISCUSSION_FILE
    from tip_ray.sweep.runner import forget_runs
    from tip_ray.sweep.start import read_start, write_start

    base = tiny_pipeline_doc(tiny_pair, demo_prompts, tmp_path / "run")
    loaded = load_sweep(write_sweep(tmp_path, base, [{"label": "a", "rule": {"type": "all"}}]))
    loaded.report_dir.mkdir()
    (loaded.runs_dir / "a-s0").mkdir(parents=True)
    write_start(loaded.report_dir, "started at 0.5", 0.5)
    assert read_start(loaded.report_dir) == {"notes": "started at 0.5", "start_accuracy": 0.5}
    for name in ("results.jsonl", "heldout_kl_before.jsonl", DISCUSSION_FILE):
        (loaded.report_dir / name).write_text("x\n")
    forget_runs(loaded)
    assert sorted(p.name for p in loaded.report_dir.iterdir()) == [DISCUSSION_FILE]
    assert not loaded.runs_dir.exists() and read_start(loaded.report_dir) is None


def test_fresh_and_report_only_together_are_refused(capsys):
    from tip_ray.cli import main

    assert main(["sweep", "pipelines/sweeps/demo_rules.yaml", "--fresh", "--report-only"]) != 0
    assert "--fresh reruns every run and --report-only only rewrites" in capsys.readouterr().err
