"""What the Ray orchestration costs: the same steps with the same tiny models through the Ray
pipeline and through an in-process loop that calls the same stage code one after another.

    python benchmarks/pipeline_overhead.py [--steps 12] [--warmup 2]

Tokens/s counts sampled response tokens per second of steady-state step time (the first
`--warmup` steps, which include lazy initialisation, are excluded from both). Writes
benchmarks/results/pipeline_overhead.json and the section of docs/benchmarks.md.
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

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results" / "pipeline_overhead.json"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Pipeline overhead: Ray pipeline vs in-process loop (issue 3)"


def pipeline_doc(pair, prompts: Path, run_dir: Path, steps: int, lag: int, weight_sync: str = "object_store") -> dict:
    """The tests' tiny pipeline with batches large enough that step time is not all overhead."""
    from tip_ray.pipeline.tiny import tiny_pipeline_doc

    return tiny_pipeline_doc(
        pair, prompts, run_dir,
        name="overhead",
        rollout={"prompts_per_step": 16, "samples_per_prompt": 4,
                 "sampling": {"temperature": 1.0, "max_new_tokens": 48}, "weight_sync": weight_sync},
        learner={"micro_batch_size": 64, "optimizer": {"lr": 1e-4}},
        # The schema's default timeout: a busy 2-core machine may need more than the tests' 120 s.
        train={"steps": steps, "max_policy_lag": lag, "stage_timeout_s": 600},
    )


def steady_rate(tokens: list[int], seconds: list[float], warmup: int) -> float:
    return sum(tokens[warmup:]) / sum(seconds[warmup:])


def measure_pipeline(config, warmup: int) -> float:
    import ray

    from tip_ray.pipeline.run import run_pipeline

    rows: list[dict] = []
    # Actor start-up is not step time: it happens once per run, whatever its length.
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        run_pipeline(config, on_step=rows.append)
    finally:
        ray.shutdown()
    return steady_rate([r["response_tokens"] for r in rows], [r["step_seconds"] for r in rows], warmup)


def measure_inprocess(config, warmup: int) -> float:
    from tip_ray.pipeline.inprocess import InProcessLoop
    from tip_ray.pipeline.prepare import prepare_run

    loop = InProcessLoop(prepare_run(config, write=False))
    steps = [loop.step(i) for i in range(config.train.steps)]
    loop.close()
    return steady_rate([s.num_response_tokens for s in steps], [s.seconds for s in steps], warmup)


def write_doc(result: dict) -> None:
    lines = [
        SECTION,
        "",
        f"Command: `python benchmarks/pipeline_overhead.py --steps {result['steps']} --warmup {result['warmup']}`",
        f"on {result['machine']}. Tiny models (teacher 2 layers x 64, student 1 layer x 32), "
        "16 prompts x 4 samples x up to 48 tokens per step, soft_or 50%, one learner rank.",
        "",
        "| path | tokens/s |",
        "|---|---|",
        f"| in-process loop | {result['inprocess_tokens_per_s']:.1f} |",
        f"| Ray pipeline, max_policy_lag 0 | {result['pipeline_tokens_per_s']:.1f} |",
        f"| Ray pipeline, max_policy_lag 1 | {result['pipeline_lag1_tokens_per_s']:.1f} |",
        f"| Ray pipeline, max_policy_lag 0, weights broadcast over gloo | {result['pipeline_broadcast_tokens_per_s']:.1f} |",
        "",
        f"Ratio (pipeline lag 0 / in-process): **{result['ratio']:.2f}** (target >= 0.85); "
        f"with lag 1: {result['ratio_lag1']:.2f}; lag 0 with broadcast: {result['ratio_broadcast']:.2f}. "
        f"Load average (1 min) before and after: {result['load_before']:.2f} / {result['load_after']:.2f}.",
        "",
        result["note"],
        "",
    ]
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        nxt = rest.find("\n## ")
        text = head + "\n".join(lines) + (rest[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from tip_ray.config import load_pipeline
    from tip_ray.demo.task import ALPHABET, write_jsonl
    from tip_ray.models.tiny import save_tiny_pair

    tmp = Path(tempfile.mkdtemp(prefix="tip-overhead-"))
    pair = save_tiny_pair(tmp / "models", alphabet=ALPHABET, seed=0)
    prompts = write_jsonl(tmp / "prompts.jsonl", n=2048, seed=3)

    def config(lag: int, name: str, weight_sync: str = "object_store"):
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(pipeline_doc(pair, prompts, tmp / name, args.steps, lag, weight_sync)))
        return load_pipeline(path)

    load_before = os.getloadavg()[0]

    inprocess = measure_inprocess(config(0, "inprocess"), args.warmup)
    print(f"in-process loop: {inprocess:.1f} tokens/s", flush=True)
    pipeline = measure_pipeline(config(0, "pipeline"), args.warmup)
    print(f"Ray pipeline (lag 0): {pipeline:.1f} tokens/s", flush=True)
    pipeline_lag1 = measure_pipeline(config(1, "pipeline-lag1"), args.warmup)
    print(f"Ray pipeline (lag 1): {pipeline_lag1:.1f} tokens/s", flush=True)
    pipeline_broadcast = measure_pipeline(config(0, "pipeline-broadcast", "broadcast"), args.warmup)
    print(f"Ray pipeline (lag 0, broadcast): {pipeline_broadcast:.1f} tokens/s", flush=True)
    result = {
        "steps": args.steps,
        "warmup": args.warmup,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "inprocess_tokens_per_s": inprocess,
        "pipeline_tokens_per_s": pipeline,
        "pipeline_lag1_tokens_per_s": pipeline_lag1,
        "ratio": pipeline / inprocess,
        "ratio_lag1": pipeline_lag1 / inprocess,
        "pipeline_broadcast_tokens_per_s": pipeline_broadcast,
        "ratio_broadcast": pipeline_broadcast / inprocess,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "note": (
            "What limits the pipeline here: every stage call crosses a process boundary (pickling "
            "the batch records into the object store and out again), the gathered weights go "
            "through the object store after every update, and on two cores the stages' torch "
            "threads compete with Ray's own processes (raylet, GCS, workers)."
        ),
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        write_doc(result)


if __name__ == "__main__":
    main()
