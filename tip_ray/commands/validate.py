"""`tip-ray validate PIPELINE.yaml | SWEEP.yaml`: the full config check, no Ray started.

Offline by default: what only a download could check (hub models not in the local cache, hub
datasets, demo models not built yet) is reported as unchecked, with the reason; `--strict`
resolves and checks everything, and fails when it cannot."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a pipeline or sweep YAML (schema, models, data) without starting Ray")
    p.add_argument("pipeline", help="pipeline or sweep YAML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    p.add_argument("--schema-only", action="store_true", help="check the YAML only, not models and data")
    p.add_argument("--strict", action="store_true",
                   help="also fetch and check hub models and datasets (and build the demo models); "
                        "fail on anything that cannot be resolved (HF_HUB_OFFLINE=1 is honoured)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tip_ray.commands.run import load_with_overrides
    from tip_ray.config.loader import load_yaml_tree
    from tip_ray.config.shipped import locate_pipeline

    if set(load_yaml_tree(locate_pipeline(args.pipeline))) == {"sweep"}:
        return _validate_sweep(args)
    config = load_with_overrides(args.pipeline, args.set)
    if args.schema_only:
        print(f"{args.pipeline}: valid pipeline {config.name!r}")
        return 0
    print(f"{args.pipeline}: valid pipeline {config.name!r}: {_check(config, args.strict)}")
    return 0


def _validate_sweep(args: argparse.Namespace) -> int:
    from tip_ray.config.loader import ConfigError
    from tip_ray.sweep.spec import load_sweep

    if args.set:
        raise ConfigError(f"{args.pipeline}: --set applies to pipelines; a sweep's overrides go under sweep.set")
    loaded = load_sweep(args.pipeline)  # every (variant, seed) is validated here
    spec = loaded.spec
    line = (f"{args.pipeline}: valid sweep: {len(spec.runs)} variant(s) x {len(spec.seeds)} seed(s) = "
            f"{len(spec.runs) * len(spec.seeds)} runs of base pipeline {loaded.base.name!r}")
    if not args.schema_only:
        line += f": {_check(loaded.base, args.strict)}"
    print(line)
    return 0


def _check(config, strict: bool) -> str:
    from tip_ray.pipeline.offline_check import check_local_parts, unchecked_offline
    from tip_ray.pipeline.prepare import prepare_run
    from tip_ray.pipeline.teacher_routing import teachers_line

    gaps = [] if strict else unchecked_offline(config)
    if gaps:
        read = check_local_parts(config)
        listed = "; ".join(f"{gap.key}: {gap.reason}" for gap in gaps)
        return f"{read}; unchecked: {listed}"
    prepared = prepare_run(config, write=False)
    report = prepared.data_report
    return (f"{len(prepared.prompts)} prompts ({len(report.skipped_bad)} bad rows skipped, "
            f"{report.dropped_overlong} overlong dropped, {report.truncated_overlong} truncated); "
            f"student {prepared.student_path}; {teachers_line(prepared)}")
