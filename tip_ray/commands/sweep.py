"""`tip-ray sweep SWEEP.yaml`: the same distillation under several selection rules, ratios and
seeds, then a report (Markdown + PNG) in the sweep's report folder."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a selection-rule sweep and write its report")
    p.add_argument("sweep", help="sweep YAML file (see pipelines/sweeps/)")
    p.add_argument("--address", default=None, help="Ray address (default: the base pipeline's)")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from finished runs")
    p.add_argument("--no-shared-teacher", action="store_true",
                   help="every run starts its own teacher (default: runs that share a teacher use one "
                        "teacher service, built once for the sweep)")
    p.add_argument("--no-token-map", action="store_true", help="skip the entropy-divergence scatter")
    p.add_argument("--fresh", action="store_true",
                   help="start over: forget the finished runs, their results and run folders")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tip_ray.sweep.report import write_report
    from tip_ray.sweep.runner import read_results, run_sweep
    from tip_ray.sweep.spec import load_sweep
    from tip_ray.sweep.start import read_start, write_start

    from tip_ray.commands.run import check_address_flag

    check_address_flag(args.address)
    loaded = load_sweep(args.sweep)
    if args.report_only and args.fresh:
        from tip_ray.config.loader import ConfigError

        raise ConfigError("--fresh reruns every run and --report-only only rewrites the report: give one of them")
    if args.fresh:
        from tip_ray.sweep.runner import forget_runs

        forget_runs(loaded)
    if args.report_only:
        records = read_results(loaded.report_dir / "results.jsonl")
    else:
        records = run_sweep(loaded, address=args.address, shared_teacher=not args.no_shared_teacher)
    token_map = None
    notes = ""
    start_accuracy = None
    models = None
    recorded = read_start(loaded.report_dir) if args.report_only else None
    student = loaded.base.models.student
    demo_student = student.type == "demo"
    if demo_student:
        from tip_ray.demo.bootstrap import DEFAULT_RECIPE
        from tip_ray.pipeline.demo_source import demo_pair

        # Rewriting a report must not start a 5-minute bootstrap: it reads the cache or goes without.
        models = demo_pair(student.task, build=not args.report_only)
        if models is None:
            print("demo models are not cached for this recipe: the token map and the start accuracy are "
                  "left out of the report (run `tip-ray demo` or the sweep to build them)", file=sys.stderr)
    if not args.no_token_map and (models is not None or not demo_student):
        from tip_ray.sweep.token_map import sample_token_map

        token_map = sample_token_map(loaded.base, loaded.spec.token_stats_prompts)
    if recorded is not None:
        # What the sweep wrote when it ran: the local demo cache may hold another recipe's models.
        notes, start_accuracy = recorded["notes"], recorded["start_accuracy"]
    elif models is not None:
        # What each run evaluates on: the sweep's `set:` may change the base pipeline's eval.
        evaluated = loaded.run_config(loaded.spec.runs[0], loaded.spec.seeds[0]).eval
        notes = (f"Every run starts from the cached demo student: greedy accuracy {models.student_accuracy:.3f} "
                 f"before distillation (teacher {models.teacher_accuracy:.3f}), measured by the bootstrap on the "
                 f"{evaluated.benchmark} held-out set (its first {evaluated.num_problems or 'all'} problems are "
                 f"what each run is evaluated on at its end).")
        if (evaluated.benchmark == "demo" and evaluated.temperature == 0.0
                and evaluated.num_problems == DEFAULT_RECIPE.eval_size):
            start_accuracy = models.student_accuracy  # the same greedy measurement on the same problems
        write_start(loaded.report_dir, notes, start_accuracy)
    command = "tip-ray sweep " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["sweep"] else f"tip-ray sweep {args.sweep}"
    out = write_report(records, [r.label for r in loaded.spec.runs], loaded.report_dir,
                       command=command, token_map=token_map, notes=notes, start_accuracy=start_accuracy)
    print(f"report: {out}")
    return 0

