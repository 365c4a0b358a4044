"""`tip-ray run PIPELINE.yaml`: one distillation run (embedded local Ray by default)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a distillation pipeline")
    p.add_argument("pipeline", help="pipeline YAML file")
    p.add_argument("--address", default=None, help="Ray address: local (default from the YAML), auto, or ray://...")
    p.add_argument("--run-dir", default=None, help="run folder (default: logging.run_dir of the YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key, e.g. train.steps=5")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.set_defaults(handler=handle)


def load_with_overrides(path: str, overrides: list[str]):
    from tip_ray.config.loader import deep_merge, load_pipeline, parse_override

    merged: dict = {}
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    return load_pipeline(path, merged or None)


def handle(args: argparse.Namespace) -> int:
    config = load_with_overrides(args.pipeline, args.set)
    from tip_ray.pipeline.run import run_pipeline

    summary = run_pipeline(config, address=args.address, run_dir=args.run_dir)
    print(
        f"run {config.name!r} finished: {summary.steps} steps, final loss {summary.final_loss:.4f}, "
        f"{summary.tokens_trained} tokens trained of {summary.response_tokens} sampled, "
        f"peak learner memory {summary.peak_learner_mib:.0f} MiB, {summary.wall_seconds:.1f} s; "
        f"run folder {summary.run_dir}"
    )
    return 0
