"""Learner memory and trainable parameters: LoRA students against full fine-tuning.

    python benchmarks/lora_memory.py              # all cases on the demo pair; prints a table, writes JSON
    python benchmarks/lora_memory.py --steps 2    # a quicker look

The batch is the demo pipeline's (pipelines/demo.yaml: 16 prompts x 4 samples, TIP Soft-OR 50%,
teacher hidden states), made once by the real rollout, teacher and selector stages. Each case
then runs in its own subprocess (freed memory is not reliably returned to the OS inside one
process): one real learner rank (FSDP2 on a gloo group of one) is built, and `--steps` updates
are taken on that batch. Per case:

- trainable / total parameters, and the optimizer state's bytes after the updates (AdamW keeps
  two float32 moments per trainable parameter);
- ``setup_mib``: RSS added by building the model and optimizer (from before the build);
- ``step_peak_mib``: peak RSS added over the updates (kernel VmHWM after a clear_refs reset, so
  exact, not sampled), measured from the RSS just before the first update: activations,
  gradients and the optimizer state created by the first update;
- ``step_s``: mean wall time per update (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results" / "lora_memory.json"
CASES = {
    "full": None,
    "lora r16 all-linear": {"rank": 16, "alpha": 32.0, "target_modules": "all-linear"},
    "lora r16 all-linear, bf16 base": {"rank": 16, "alpha": 32.0, "target_modules": "all-linear",
                                       "base_dtype": "bfloat16"},
    "lora r4 q,v": {"rank": 4, "alpha": 8.0, "target_modules": ["q_proj", "v_proj"]},
}


def demo_config(run_dir: Path, lora: dict | None):
    from tip_ray.config.loader import load_pipeline

    overrides = {"logging": {"run_dir": str(run_dir), "progress": False}, "learner": {"num_ranks": 1}}
    if lora is not None:
        overrides["learner"]["lora"] = lora
    return load_pipeline(REPO / "pipelines" / "demo.yaml", overrides)


def make_batch(out: Path) -> None:
    """One SelectedBatch of the demo pipeline, from the real stages, saved to `out`."""
    import torch

    from tip_ray.data.prompts import PromptSampler
    from tip_ray.demo.bootstrap import ensure_demo_models
    from tip_ray.pipeline.placement import plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.batches import make_prompt_batch
    from tip_ray.pipeline.stages import rollout_settings, scorer_settings, selector_settings
    from tip_ray.rollout.worker import RolloutWorker
    from tip_ray.select.selector import Selector
    from tip_ray.teacher.scorer import TeacherScorer
    from tip_ray.weights import WeightVersion

    ensure_demo_models(progress=False)
    prepared = prepare_run(demo_config(out.parent / "run", None), write=False)
    plans = plan_placement(prepared.config)
    c = prepared.config
    batch = make_prompt_batch(PromptSampler(prepared.prompts, seed=0, shuffle=True), 0, c.rollout.prompts_per_step)
    weights = WeightVersion(0)
    rollout = RolloutWorker(rollout_settings(prepared, plans["rollout"], 0)).generate(batch, weights)
    scored = TeacherScorer(scorer_settings(prepared, plans["teacher"], 0)).score(rollout)
    selected, _ = Selector(selector_settings(prepared, plans["selector"], 0)).select(weights, scored)
    torch.save(selected, out)


def run_case(name: str, batch_path: Path, steps: int) -> dict:
    import dataclasses

    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from selective_memory import PeakRss, _status_kib, _volunteer_for_oom_killer

    from tip_ray.learner.lora import count_parameters
    from tip_ray.learner.rank import LearnerRank
    from tip_ray.pipeline.placement import plan_placement
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.stages import learner_settings

    _volunteer_for_oom_killer()
    batch = torch.load(batch_path, weights_only=False)
    prepared = prepare_run(demo_config(batch_path.parent / "run", CASES[name]), write=False)
    settings = dataclasses.replace(learner_settings(prepared, plan_placement(prepared.config)["learner"]),
                                   world_size=1, num_threads=1)
    before_kib = _status_kib("VmRSS")
    learner = LearnerRank(0, settings)
    learner.setup(*learner.rendezvous_address())
    setup_mib = (_status_kib("VmRSS") - before_kib) / 1024
    trainable, total = count_parameters(learner.model)
    losses = []
    with PeakRss() as peak:
        start = time.perf_counter()
        for _ in range(steps):
            losses.append(learner.train_step(batch).loss)
        seconds = (time.perf_counter() - start) / steps
    optimizer_bytes = sum(t.numel() * t.element_size() for state in learner.optimizer.state.values()
                          for t in state.values() if torch.is_tensor(t) and t.dim() > 0)
    learner.shutdown()
    return {"case": name, "trainable_params": trainable, "total_params": total,
            "optimizer_state_mib": optimizer_bytes / 2**20, "setup_mib": setup_mib,
            "step_peak_mib": peak.added_mib, "step_s": seconds, "losses": losses,
            "selected_tokens": batch.num_selected, "rows": int(batch.input_ids.shape[0]),
            "peak_method": peak.method}


def table(results: list[dict]) -> str:
    lines = ["| case | trainable params | of total | optimizer state MiB | setup MiB | step peak MiB | s / step |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['case']} | {r['trainable_params']:,} | {100 * r['trainable_params'] / r['total_params']:.1f}% "
                     f"| {r['optimizer_state_mib']:.2f} | {r['setup_mib']:.1f} | {r['step_peak_mib']:.1f} | {r['step_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--only", choices=list(CASES))
    parser.add_argument("--case-json", help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--batch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case_json:
        print(json.dumps(run_case(args.case_json, Path(args.batch), args.steps)))
        return
    with tempfile.TemporaryDirectory(prefix="lora-bench") as tmp:
        batch_path = Path(tmp) / "batch.pt"
        make_batch(batch_path)
        results = []
        for name in [args.only] if args.only else list(CASES):
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, __file__, "--case-json", name, "--batch", str(batch_path),
                                  "--steps", str(args.steps)], capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise SystemExit(f"case {name!r} failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]))
    with open("/proc/loadavg") as handle:
        load = handle.read().strip()
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg": load,
              "cpus": os.cpu_count(), "steps": args.steps, "results": results}
    print(table(results))
    print(f"loadavg {load}")
    if not args.only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
