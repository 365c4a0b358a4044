"""`tip-ray demo`: the main job on a laptop. Trains (first run only, then cached) a small teacher
and a weaker student on the built-in arithmetic task, distils the teacher into the student with
TIP's Soft-OR rule at 50% through the Ray pipeline, and prints a short table."""

from __future__ import annotations

import argparse



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="bootstrap the demo models (cached) and run the demo distillation")
    p.add_argument("--task", default="arithmetic", choices=["arithmetic", "prices"],
                   help="arithmetic: the demo; prices: the agentic demo, where the models call a price-lookup "
                        "tool (pipelines/demo_tools.yaml)")
    p.add_argument("--pipeline", default=None,
                   help="demo pipeline YAML (default: the shipped pipelines/demo.yaml, or demo_tools.yaml "
                        "with --task prices)")
    p.add_argument("--run-dir", default=None,
                   help="run folder (default: a new runs/demo-<date>-<time> under the working directory, "
                        "so each demo starts fresh; "
                        "give an existing folder to continue it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from tip_ray.commands.run import load_with_overrides
    start = time.perf_counter()
    from tip_ray.config.shipped import shipped_root

    tools = args.task == "prices"
    default = "demo_tools.yaml" if tools else "demo.yaml"
    config = load_with_overrides(args.pipeline or str(shipped_root() / "pipelines" / default), args.set)
    print("[1/2] demo models: teacher and student (trained on first use, then cached)", flush=True)
    if tools:
        from tip_ray.demo.tools_bootstrap import ensure_tools_models

        models = ensure_tools_models(progress=True)
    else:
        from tip_ray.demo.bootstrap import ensure_demo_models

        models = ensure_demo_models(progress=True)
    print(
        f"      teacher {models.teacher_path} (accuracy {models.teacher_accuracy:.1%}), "
        f"student {models.student_path} (accuracy {models.student_accuracy:.1%})",
        flush=True,
    )
    print(f"[2/2] on-policy distillation: {config.selection.rule.type} at "
          f"{config.selection.rule.ratio:.0%}, {config.train.steps} steps, local Ray", flush=True)
    from tip_ray.pipeline.supervisor import run_pipeline

    # A demo starts over each time: a fixed folder would silently resume the last demo's final step.
    run_dir = args.run_dir or str(Path.cwd() / "runs" / time.strftime(f"{config.name}-%Y%m%d-%H%M%S"))
    summary = run_pipeline(config, run_dir=run_dir)
    evals = dict(summary.evals)
    before = evals.get(0)
    after = evals.get(summary.steps)
    rows = [
        ("teacher accuracy", f"{models.teacher_accuracy:.1%}"),
        ("student accuracy before", f"{before:.1%}" if before is not None else "not evaluated"),
        ("student accuracy after", f"{after:.1%}" if after is not None else "not evaluated"),
        ("tokens trained on", f"{summary.tokens_trained} of {summary.response_tokens} sampled "
                              f"({summary.tokens_trained / max(summary.response_tokens, 1):.0%})"),
        ("peak learner memory", f"{summary.peak_learner_mib:.0f} MiB per rank (RSS)"),
        ("wall time", f"{time.perf_counter() - start:.0f} s (distillation {summary.wall_seconds:.0f} s)"),
        ("run folder", str(summary.run_dir)),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n" + "\n".join(f"  {name:<{width}}  {value}" for name, value in rows))
    return 0
