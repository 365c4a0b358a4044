"""The whole Ray pipeline against an in-process loop on the real SmolLM2 pair, at max_policy_lag 0
and 1: what orchestration costs when the models are real, and whether sampling the next batch
while the learner trains pays.

    python benchmarks/real_pipeline_overhead.py [--steps 4] [--warmup 1] [--repeats 1] [--no-write]

Every path runs pipelines/smollm2_pruned.yaml as shipped (SmolLM2-135M-Instruct teacher, the
student pruned to 15 of its 30 layers and healed, both from ~/.cache/tip-ray/; 4 prompts x 2
samples x up to 96 new tokens, Soft-OR 50%, one learner rank) for `--steps` steps; only
`train.max_policy_lag`, the step count and the run folder change. The three paths, each run
`--repeats` times, interleaved (a slow spell of the machine then hits every path):

- in-process loop: tip_ray.pipeline.inprocess.InProcessLoop, the same stage code called one
  after another in this process, no Ray;
- Ray pipeline, max_policy_lag 0: the stages take turns, as in the loop;
- Ray pipeline, max_policy_lag 1: the next batch is sampled, scored and selected while the
  learner trains on the current one.

The loop and the pipelines are measured by benchmarks/pipeline_overhead.py's own functions
(`measure_inprocess`, `measure_pipeline`): tokens/s = sampled response tokens per second of
steady-state step time, the first `--warmup` steps (lazy initialisation, the first rollout that
nothing overlaps) left out of every path; model loading and actor start-up are not step time.

Thread budget: every path gets the machine's cores, no more, through the run's own placement
plan (tip_ray.pipeline.placement.plan_placement, no `cluster.pools`). At lag 0 every stage may use
all the cores because only one runs at a time; the in-process loop is built from the lag-0
config, so each of its stages gets exactly the thread count the lag-0 actors get. At lag 1 two
sides run at once (sampling, scoring and selection; training), so each stage gets half the cores:
threads beyond the cores would spin against each other. The plan of each path is printed and
kept in the JSON. Ray's own processes (raylet, GCS, the driver) are not counted in any budget:
they are part of what the pipeline costs.

Targets: the lag-0 pipeline at >= 0.85x the in-process
loop, the lag-1 pipeline faster than the loop (> 1.0x). Printed met or not. With `--no-write`
nothing is written; otherwise benchmarks/results/real_pipeline_overhead.json and this section of
docs/benchmarks.md. Run it on a quiet machine: the 1-minute load average at the start, at the end
and its highest reading after each path are printed and written with the figures (a busy spell
in the middle of a run leaves the start and end readings quiet).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from doc_sections import write_figures  # noqa: E402
from pipeline_overhead import measure_inprocess, measure_pipeline  # noqa: E402

PIPELINE = REPO / "pipelines" / "smollm2_pruned.yaml"
RESULTS = REPO / "benchmarks" / "results" / "real_pipeline_overhead.json"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Whole pipeline vs in-process loop on a real pair (SmolLM2-135M teacher, pruned student)"

# key, title, max_policy_lag, measured in the loop (True) or through Ray (False)
PATHS = (
    ("inprocess", "in-process loop", 0, True),
    ("pipeline", "Ray pipeline, max_policy_lag 0", 0, False),
    ("pipeline_lag1", "Ray pipeline, max_policy_lag 1", 1, False),
)
# key -> (least ratio to the in-process loop, whether the ratio must exceed it strictly)
TARGETS = {"pipeline": (0.85, False), "pipeline_lag1": (1.0, True)}


def real_config(lag: int, steps: int, run_dir: Path):
    """The shipped SmolLM2 pipeline with only the lag, the step count and the run folder changed."""
    from tip_ray.commands.run import load_with_overrides

    return load_with_overrides(str(PIPELINE), [
        f"train.steps={steps}", f"train.max_policy_lag={lag}",
        "logging.progress=false", f"logging.run_dir={run_dir}",
    ])


def thread_plan(config) -> dict[str, int]:
    """torch threads per stage, as the run's placement gives them."""
    from tip_ray.pipeline.placement import plan_placement

    return {str(role): plan.num_threads for role, plan in plan_placement(config).items()}


def target_met(key: str, ratio: float) -> bool | None:
    if key not in TARGETS:
        return None
    least, strictly = TARGETS[key]
    return ratio > least if strictly else ratio >= least


def target_text(key: str) -> str:
    least, strictly = TARGETS[key]
    return f"{'>' if strictly else '>='} {least:.2f}"


def summarise(rates: dict[str, list[float]]) -> dict[str, dict]:
    """Median tokens/s of each path, its ratio to the in-process median and the target verdict."""
    base = statistics.median(rates["inprocess"])
    out = {}
    for key, _, _, _ in PATHS:
        median = statistics.median(rates[key])
        ratio = median / base
        out[key] = {"median": median, "ratio": ratio, "met": target_met(key, ratio)}
    return out


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "NOT met")


def markdown(result: dict) -> str:
    rates, summary = result["tokens_per_s"], result["summary"]
    lines = [
        SECTION, "",
        f"`python benchmarks/real_pipeline_overhead.py --steps {result['steps']} --warmup {result['warmup']} "
        f"--repeats {result['repeats']}` on {result['machine']}, {result['date']}; 1-minute load average "
        f"{result['load'][0]:.2f} at start, {result['load'][1]:.2f} at end, at most {result['load_max']:.2f} "
        "after a path. pipelines/smollm2_pruned.yaml as "
        "shipped (4 prompts x 2 samples x up to 96 new tokens, Soft-OR 50%, 1 learner rank); tokens/s = "
        f"sampled response tokens per second of step time, the first {result['warmup']} step(s) of each run "
        "left out.", "",
        "| path | torch threads per stage | tokens/s (median) | range | ratio to in-process | target |",
        "|---|---|---|---|---|---|",
    ]
    for key, title, _, _ in PATHS:
        threads = ", ".join(f"{role} {n}" for role, n in result["threads"][key].items())
        row = summary[key]
        target = f"{target_text(key)}: {verdict(row['met'])}" if key in TARGETS else "-"
        lines.append(f"| {title} | {threads} | {row['median']:.1f} | {min(rates[key]):.1f}-{max(rates[key]):.1f} | "
                     f"{row['ratio']:.2f} | {target} |")
    lines += ["", "Every path gets the machine's cores: at lag 0 one stage runs at a time with all of them (the "
              "in-process loop is built from the lag-0 config, so its stages get the same counts); at lag 1 "
              "sampling and training run at once and split them (tip_ray/pipeline/placement.py).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; write neither the JSON nor the docs")
    args = parser.parse_args()
    # The in-process side runs under the stage actors' OpenMP setting (set before torch loads),
    # so both sides run the same code with the same threads.
    from tip_ray.pipeline.placement import thread_wait_env

    os.environ.update(thread_wait_env())
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup}): no steady-state step is left")

    loads = [os.getloadavg()[0]]  # at the start, then after each path
    tmp = Path(tempfile.mkdtemp(prefix="real-pipeline-overhead-"))
    threads = {key: thread_plan(real_config(lag, args.steps, tmp / "plan")) for key, _, lag, _ in PATHS}
    for key, title, _, _ in PATHS:
        print(f"{title}: threads {threads[key]}", flush=True)

    rates: dict[str, list[float]] = {key: [] for key, _, _, _ in PATHS}
    for repeat in range(args.repeats):
        for key, title, lag, inprocess in PATHS:
            config = real_config(lag, args.steps, tmp / f"{key}-{repeat}")
            measure = measure_inprocess if inprocess else measure_pipeline
            rates[key].append(measure(config, args.warmup))
            loads.append(os.getloadavg()[0])
            print(f"repeat {repeat + 1}, {title}: {rates[key][-1]:.1f} tokens/s "
                  f"(1-minute load average {loads[-1]:.2f})", flush=True)

    summary = summarise(rates)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load": [loads[0], loads[-1]], "load_max": max(loads),
        "threads": threads, "tokens_per_s": rates, "summary": summary,
    }
    for key, title, _, _ in PATHS:
        row = summary[key]
        target = f", target {target_text(key)}: {verdict(row['met'])}" if key in TARGETS else ""
        print(f"{title}: {row['median']:.1f} tokens/s, {row['ratio']:.2f}x the in-process loop{target}")
    print(f"1-minute load average: {result['load'][0]:.2f} at start, {result['load'][1]:.2f} at end, "
          f"at most {result['load_max']:.2f} after a path ({os.cpu_count()} cores)")
    if args.no_write:
        return
    write_figures(RESULTS, result, DOC, SECTION, markdown(result))
    print(f"wrote {RESULTS} and {DOC}")


if __name__ == "__main__":
    main()
