"""`tip-ray run PIPELINE.yaml`: one distillation run (embedded local Ray by default).

Run again on the same run folder, it continues from the newest complete checkpoint there;
`--resume` insists on one (and fails when there is none)."""

from __future__ import annotations

import argparse
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a distillation pipeline")
    p.add_argument("pipeline", help="pipeline YAML file, or the name of a shipped pipeline (e.g. demo)")
    p.add_argument("--address", default=None, help="Ray address: local (default from the YAML), auto, or ray://...")
    p.add_argument("--run-dir", default=None, help="run folder (default: logging.run_dir of the YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key, e.g. train.steps=5")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's newest complete checkpoint, and fail if there is none "
        "(without it a run folder holding checkpoints is continued too)",
    )
    p.set_defaults(handler=handle)


def load_with_overrides(path: str, overrides: list[str]):
    from tip_ray.config.loader import deep_merge, load_pipeline, parse_override
    from tip_ray.config.shipped import locate_pipeline

    merged: dict = {}
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    return load_pipeline(locate_pipeline(path), merged or None)


def check_address_flag(address: str | None) -> None:
    """--address checked before anything loads (the config's own is checked by the schema)."""
    from tip_ray.config.addresses import ray_address_problem
    from tip_ray.config.loader import ConfigError

    problem = ray_address_problem(address) if address is not None else None
    if problem:
        raise ConfigError(f"--address: {problem}")


def log_to_stderr() -> None:
    """The run's events (resumes, restarts, skipped steps, checkpoints) on stderr, secrets masked."""
    from tip_ray.checkpoint.redact import RedactingFilter

    logger = logging.getLogger("tip_ray")
    if any(getattr(h, "_tip_ray_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tip-ray: %(message)s"))
    handler.addFilter(RedactingFilter())
    handler._tip_ray_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

def finished_line(name: str, summary) -> str:
    """The run's last stdout line, secret values masked (a name may hold one pasted by mistake)."""
    from tip_ray.checkpoint.redact import redact

    resumed = ""
    if summary.resumed_from is not None:
        resumed = (f"; resumed from step {summary.resumed_from} ({summary.resumes} resume(s), "
                   f"{summary.batches_redone} batch(es) redone, {summary.in_flight_relaunched} in-flight "
                   f"batch(es) resampled)")
    return redact(
        f"run {name!r} finished: {summary.steps} steps, final loss {summary.final_loss:.4f}, "
        f"{summary.tokens_trained} tokens trained of {summary.response_tokens} sampled, "
        f"peak learner memory {summary.peak_learner_mib:.0f} MiB, {summary.wall_seconds:.1f} s; "
        f"{summary.actor_restarts} actor restart(s), {summary.skipped_steps} skipped step(s){resumed}; "
        f"run folder {summary.run_dir}"
    )


def handle(args: argparse.Namespace) -> int:
    check_address_flag(args.address)
    config = load_with_overrides(args.pipeline, args.set)
    from tip_ray.checkpoint.lock import RunFolderBusy
    from tip_ray.checkpoint.redact import redact
    from tip_ray.pipeline.faults import PolicyLagExceeded, RunFailed, StageDied, StageTimeout, TooManyBadSteps
    from tip_ray.pipeline.supervisor import run_pipeline
    from tip_ray.pipeline.signals import SIGTERM_EXIT_CODE, Preempted

    log_to_stderr()
    try:
        summary = run_pipeline(config, address=args.address, run_dir=args.run_dir,
                               resume="require" if args.resume else "auto")
    except (RunFolderBusy, TooManyBadSteps, RunFailed, StageTimeout, StageDied, PolicyLagExceeded) as exc:
        print(f"tip-ray: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except Preempted:  # not an error: stopped as asked (its line is already on stderr, logged)
        return SIGTERM_EXIT_CODE
    print(finished_line(config.name, summary))
    return 0
