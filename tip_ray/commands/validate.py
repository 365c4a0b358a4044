"""`tip-ray validate PIPELINE.yaml`: the full config check, no Ray started."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a pipeline YAML (schema, models, data) without starting Ray")
    p.add_argument("pipeline", help="pipeline YAML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.add_argument("--schema-only", action="store_true", help="check the YAML only, not models and data")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tip_ray.commands.run import load_with_overrides

    config = load_with_overrides(args.pipeline, args.set)
    if args.schema_only:
        print(f"{args.pipeline}: valid pipeline {config.name!r}")
        return 0
    from tip_ray.pipeline.prepare import prepare_run

    prepared = prepare_run(config, write=False)
    report = prepared.data_report
    print(
        f"{args.pipeline}: valid pipeline {config.name!r}: {len(prepared.prompts)} prompts "
        f"({len(report.skipped_bad)} bad rows skipped, {report.dropped_overlong} overlong dropped, "
        f"{report.truncated_overlong} truncated); student {prepared.student_path}; "
        f"teacher {prepared.teacher_path}"
    )
    return 0
