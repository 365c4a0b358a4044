"""Where a real step's time goes: the per-stage breakdown of pipeline steps on the SmolLM2 pair,
and in-pipeline rollout tokens/s against the same Hugging Face backend run standalone.

    python benchmarks/real_pipeline_step.py [--steps 3] [--repeats 2] [--pipeline-runs 2] [--no-write]

Pipeline: pipelines/smollm2_pruned.yaml (4 prompts x 2 samples, 96 new tokens, Soft-OR 50%, one
learner rank, max_policy_lag 0) for `--steps` steps on an embedded local Ray. Each step's time
is split (tip_ray.pipeline.breakdown) into rollout, teacher, selector, learner, weight sync, and
the rest ("overhead": Ray calls, object transfers, the driver); the first step is reported apart
(it warms every actor up).

Standalone: the rollout stage's own code (RolloutWorker, Hugging Face backend) on the same
student folder in this process, with the rollout actor's thread count, on the very batches the
pipeline samples (same prompts, same seeds; batch 0 is the warm-up, as in the pipeline), totalled
over steps 1.. as the pipeline's figure is; best of `--repeats` passes. The pipeline side is
likewise the best of `--pipeline-runs` runs (each in a fresh run folder, with its own Ray), so
both sides take the same statistic; the step table shows that run. Only the weights differ:
the pipeline's have had its updates. tokens/s counts sampled response tokens per second of
sampling in both. (Rates move with the batch: prompts are left-padded to the longest one of the
batch, so one batch's rate is no reference for others.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results" / "real_pipeline_step.json"
SECTION = "## A real pipeline step, stage by stage (SmolLM2-135M teacher, pruned student)"
PIPELINE = REPO / "pipelines" / "smollm2_pruned.yaml"


def pipeline_batches(prepared, steps: int):
    """The prompt batches the pipeline samples at steps 0..steps-1: its sampler, seed and batch size."""
    from tip_ray.data.prompts import PromptSampler
    from tip_ray.pipeline.batches import make_prompt_batch

    config = prepared.config
    sampler = PromptSampler(prepared.prompts, seed=config.train.seed, shuffle=config.data.shuffle)
    return [make_prompt_batch(sampler, step, config.rollout.prompts_per_step) for step in range(steps)]


def standalone_rollout(prepared, plan, batches, repeats: int) -> float:
    """Response tokens per second of sampling over batches[1:], best of `repeats` passes."""
    from tip_ray.pipeline.stages import rollout_settings
    from tip_ray.rollout.worker import RolloutWorker
    from tip_ray.weights import WeightVersion

    worker = RolloutWorker(rollout_settings(prepared, plan, 0))
    initial = WeightVersion(version=0)
    warm = worker.generate(batches[0], initial)
    print(f"standalone warm-up (batch 0): {warm.num_response_tokens / warm.seconds:.1f} tokens/s", flush=True)
    measured = batches[1:] or batches  # as the pipeline's figure: its steps after the first, if any
    best = 0.0
    for number in range(repeats):
        rollouts = [worker.generate(batch, initial) for batch in measured]
        rate = sum(r.num_response_tokens for r in rollouts) / sum(r.seconds for r in rollouts)
        print(f"standalone pass {number + 1} (batches {measured[0].batch_id}..{measured[-1].batch_id}): "
              f"{rate:.1f} tokens/s", flush=True)
        best = max(best, rate)
    return best


def steady_rollout_rate(rows: list[dict]) -> float:
    """Sampled response tokens per second of sampling over a run's steps after the first (all of
    them for a one-step run): the first step warms every actor up."""
    steady = rows[1:] or rows
    return sum(r["response_tokens"] for r in steady) / sum(r["response_tokens"] / r["rollout_tokens_per_s"] for r in steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pipeline-runs", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    # The in-process side runs under the stage actors' OpenMP setting (set before torch loads),
    # so both sides run the same code with the same threads.
    from tip_ray.pipeline.placement import thread_wait_env

    os.environ.update(thread_wait_env())

    from tip_ray.commands.run import load_with_overrides
    from tip_ray.pipeline.breakdown import STAGES, format_breakdown, stage_seconds
    from tip_ray.pipeline.placement import plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.supervisor import run_pipeline

    from machine_load import busy_cores, machine_note

    busy_before = busy_cores()
    load_start = os.getloadavg()[0]
    config = load_with_overrides(str(PIPELINE), [f"train.steps={args.steps}", "logging.progress=false"])
    prepared = prepare_run(config, write=False)
    plan = plan_placement(config)["rollout"]
    standalone = standalone_rollout(prepared, plan, pipeline_batches(prepared, args.steps), args.repeats)
    runs = []  # (in-pipeline rollout tokens/s, step breakdowns), one per pipeline run
    for number in range(args.pipeline_runs):
        summary = run_pipeline(config, run_dir=tempfile.mkdtemp(prefix="real-pipeline-step-"))
        rows = [json.loads(line) for line in (Path(summary.run_dir) / "metrics.jsonl").read_text().splitlines() if line]
        breakdowns = [stage_seconds(r) for r in rows]
        for step, b in enumerate(breakdowns):
            print(f"run {number + 1}, step {step}: {format_breakdown(b)}")
        runs.append((steady_rollout_rate(rows), breakdowns))
        print(f"run {number + 1}: rollout {runs[-1][0]:.1f} tokens/s in the pipeline (steps 1..)", flush=True)
    in_pipeline, breakdowns = max(runs, key=lambda run: run[0])
    load = (load_start, os.getloadavg()[0])
    ratio = in_pipeline / standalone if standalone else float("nan")
    print(f"rollout tokens/s: in pipeline {in_pipeline:.1f} (steps 1..), standalone {standalone:.1f}, "
          f"ratio {ratio:.2f} (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'}); rollout threads {plan.num_threads}")
    print(f"1-minute load average: {load[0]:.1f} at start, {load[1]:.1f} at end ({os.cpu_count()} cores); "
          f"machine {machine_note(busy_before)}")
    if args.no_write:
        return
    result = {"date": time.strftime("%Y-%m-%d"), "load": load, "busy_cores_before": busy_before,
              "rollout_threads": plan.num_threads, "standalone_tokens_per_s": standalone,
              "pipeline_tokens_per_s": in_pipeline, "pipeline_runs_tokens_per_s": [rate for rate, _ in runs],
              "steps": breakdowns}
    lines = [SECTION, "",
             f"`python benchmarks/real_pipeline_step.py --steps {args.steps} --repeats {args.repeats} "
             f"--pipeline-runs {args.pipeline_runs}` on {platform.machine()} with "
             f"{os.cpu_count()} cores, {result['date']}; 1-minute load average {load[0]:.1f} at start, {load[1]:.1f} "
             f"at end; machine {machine_note(busy_before)}. "
             "pipelines/smollm2_pruned.yaml: 4 prompts x 2 samples, 96 new "
             "tokens, Soft-OR 50%, 1 learner rank, max_policy_lag 0.", "",
             "| step | step (s) | " + " | ".join(f"{s} (s)" for s in STAGES) + " | overhead (s) |",
             "|---|---|" + "---|" * (len(STAGES) + 1)]
    for number, b in enumerate(breakdowns):
        lines.append(f"| {number} | {b['step']:.1f} | " + " | ".join(f"{b[s]:.1f}" for s in STAGES)
                     + f" | {b['overhead']:.1f} |")
    rates = ", ".join(f"{rate:.1f}" for rate, _ in runs)
    lines += ["", f"Rollout: {in_pipeline:.1f} tokens/s inside the pipeline (steps after the first; best of "
              f"{len(runs)} runs: {rates}; the table shows that run) against {standalone:.1f} tokens/s for the same "
              f"stage code standalone ({plan.num_threads} threads, same batches and seeds, best of {args.repeats} "
              f"passes): {ratio:.2f}x (target 0.9x: {'met' if ratio >= 0.9 else 'not met'})."]
    from doc_sections import write_figures

    write_figures(RESULTS, result, REPO / "docs" / "benchmarks.md", SECTION, "\n".join(lines))
    print(f"wrote {RESULTS} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
