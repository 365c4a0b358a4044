"""Run folders for the report tests, written by the pipeline's own row builders (step_metrics,
EvalReport.summary) so that a renamed column breaks these tests as it would break the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import yaml

from tip_ray.eval.evaluate import EvalReport
from tip_ray.eval.metrics import MetricEstimate
from tip_ray.pipeline.metrics import MetricsLog, step_metrics
from tip_ray.pipeline.step_row import StepCounters
from tip_ray.records import SelectionSummary, StepResult
from tip_ray.tip.taxonomy import CutLines, quadrant_labels, quadrant_summary

STEPS = 12
SKIPPED_STEP = 5
RESTART_AT = 8


def selection_summary(step: int, generator: torch.Generator) -> SelectionSummary:
    entropy = torch.rand(4, 16, generator=generator)
    divergence = torch.rand(4, 16, generator=generator) * (1.0 - step / (2 * STEPS))
    mask = torch.rand(4, 16, generator=generator) > 0.2
    labels = quadrant_labels(entropy, divergence, mask, CutLines(entropy=0.5, divergence=0.3))
    tokens = int(mask.sum())
    return SelectionSummary(
        batch_id=step - 1, policy_version=max(0, step - 2), teacher_seconds=0.05 * step,
        num_response_tokens=tokens, num_selected=tokens // 2,
        mean_entropy=float(entropy[mask].mean()), mean_reverse_kl=float(divergence[mask].mean()),
        quadrants=quadrant_summary(labels, entropy, divergence, mask), approximate=False,
        selector_version=step - 1, seconds=0.01 * step)


def metrics_rows(steps: int = STEPS) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    rows = []
    for step in range(1, steps + 1):
        summary = selection_summary(step, generator)
        skipped = step == SKIPPED_STEP
        result = StepResult(step=step, loss=math.nan if skipped else 2.0 / step, grad_norm=1.0,
                            lr=1e-3 * (1 - step / (steps + 1)), num_selected=summary.num_selected,
                            skipped=skipped, seconds=0.2 + 0.01 * step, peak_memory_mib=400.0 + step)
        counters = StepCounters(
            nonfinite_inputs=0, nonfinite_weights=0, empty_responses=0, skipped_steps=int(step >= SKIPPED_STEP),
            actor_restarts=int(step >= RESTART_AT), resumes=0, batches_redone=0, in_flight_relaunched=0,
            data_rows_skipped=0, prompts_truncated=0, prompts_dropped=0)
        row = step_metrics(result, summary, learner_version=step, signal_form="hidden", signal_exact=True,
                           rollout_seconds=0.5, teacher_seconds=summary.teacher_seconds,
                           step_seconds=1.0 + 0.1 * step, in_flight=2, accuracy=0.1 * (step % 5),
                           prompt_rows=(4 * step, 4 * step + 1), weight_sync="object_store",
                           weight_sync_seconds=0.05, counters=counters)
        rows.append(row.to_row())
    return rows


def eval_row(step: int, correct: list[float]) -> dict:
    mean = sum(correct) / len(correct)
    stderr = math.sqrt(sum((c - mean) ** 2 for c in correct) / (len(correct) - 1) / len(correct))
    report = EvalReport(n=2, mean=MetricEstimate(mean, stderr, len(correct)),
                        pass_at={1: MetricEstimate(mean, stderr, len(correct))}, outcomes=(), generate_s=0.1, grade_s=0.0)
    return {"step": step, "benchmark": "demo", **report.summary(), "num_problems": len(correct), "accuracy": mean}


def write_run(folder: Path, *, name: str = "tiny", steps: int = STEPS, config_extra: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"name": name, "train": {"steps": steps}, **(config_extra or {})}
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    log = MetricsLog(folder)
    for row in metrics_rows(steps):
        log.write(row)
    with (folder / "evals.jsonl").open("w") as handle:
        for step, correct in ((0, [0, 0.5, 0, 0]), (6, [0.5, 0.5, 1, 0]), (12, [1, 0.5, 1, 0.5])):
            handle.write(json.dumps(eval_row(step, correct)) + "\n")
    return folder
