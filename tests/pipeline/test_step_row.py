"""The typed metrics row: its JSON columns, the one spelling of the quadrant columns, and loud
failures where a misspelt key used to read 0."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from tests.report.run_folders import selection_summary
from tip_ray.pipeline.metrics import step_metrics
from tip_ray.pipeline.step_row import QuadrantStats, StepCounters, quadrant_column
from tip_ray.records import StepResult
from tip_ray.sweep.runner import record_from_run
from tip_ray.tip.taxonomy import quadrant_key


def counters(**changes) -> StepCounters:
    base = dict(nonfinite_inputs=0, nonfinite_weights=0, empty_responses=1, skipped_steps=0, actor_restarts=0,
                resumes=0, batches_redone=0, in_flight_relaunched=0, data_rows_skipped=2, prompts_truncated=0,
                prompts_dropped=0)
    return StepCounters(**{**base, **changes})


def a_row(step: int = 3):
    summary = selection_summary(step, torch.Generator().manual_seed(step))
    result = StepResult(step=step, loss=0.5, grad_norm=1.0, lr=1e-3, num_selected=summary.num_selected,
                        skipped=False, seconds=0.5, peak_memory_mib=100.0)
    return summary, step_metrics(result, summary, learner_version=step, signal_form="topk", signal_exact=False,
                                 rollout_seconds=2.0, teacher_seconds=1.0, step_seconds=4.0, in_flight=1,
                                 accuracy=None, prompt_rows=(7, 8), weight_sync="object_store",
                                 weight_sync_seconds=0.1, counters=counters())


def test_the_json_row_holds_every_column_once_with_the_quadrants_spelled_one_way():
    summary, row = a_row()
    columns = row.to_row()
    assert columns["prompt_rows"] == [7, 8] and columns["data_rows_skipped"] == 2
    assert columns["tokens_per_s"] == pytest.approx(summary.num_response_tokens / 4.0)
    assert columns["policy_lag"] == 3 - summary.policy_version
    for q in (1, 2, 3, 4):
        for stat in ("share", "mean_entropy", "mean_divergence"):
            assert columns[quadrant_column(stat, q)] == summary.quadrants[quadrant_key(stat, q)]
    assert math.isclose(sum(columns[quadrant_column("share", q)] for q in (1, 2, 3, 4)), 1.0)
    assert "eval_accuracy" not in columns  # written only on rows that evaluated
    assert replace(row, evaluated=True, eval_accuracy=None).to_row()["eval_accuracy"] is None
    assert list(columns)[:3] == ["step", "batch_id", "loss"]


def test_misspelt_keys_fail_loudly():
    with pytest.raises(KeyError, match="quadrant statistic 'shares'"):
        quadrant_column("shares", 1)
    with pytest.raises(KeyError, match="quadrant 5"):
        quadrant_column("share", 5)
    summary, _ = a_row()
    partial = {k: v for k, v in summary.quadrants.items() if k != quadrant_key("share", 3)}
    with pytest.raises(KeyError, match="share_q3"):
        QuadrantStats.from_summary(partial)
    with pytest.raises(TypeError):
        counters(skiped_steps=1)


def test_the_sweep_reads_the_quadrant_shares_the_run_wrote_and_refuses_rows_without_them(tmp_path):
    from tip_ray.pipeline.metrics import MetricsLog
    from tip_ray.pipeline.summary import RunSummary

    log = MetricsLog(tmp_path)
    rows = [a_row(step)[1].to_row() for step in (1, 2)]
    for row in rows:
        log.write(row)
    summary = RunSummary(run_dir=tmp_path, steps=2, final_loss=0.5, tokens_trained=1, response_tokens=2,
                         peak_learner_mib=1.0, wall_seconds=1.0, evals=((0, 0.1), (2, 0.2)), final_model=None)
    record = record_from_run("r", "all", 1.0, 0, summary, tmp_path)
    expected = sum(r[quadrant_column("share", 3)] for r in rows) / 2
    assert record.quadrant_shares["q3"] == pytest.approx(expected)
    stripped = {k: v for k, v in rows[0].items() if k != quadrant_column("share", 2)}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(stripped) + "\n")
    with pytest.raises(KeyError, match="quadrant_share_q2"):
        record_from_run("r", "all", 1.0, 0, summary, tmp_path)
