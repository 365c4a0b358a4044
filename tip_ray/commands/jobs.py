"""`tip-ray submit | status | logs | stop`: a run as a job on a Ray cluster (the Ray Jobs API).

    tip-ray submit pipelines/demo.yaml --address http://127.0.0.1:8265 [--follow] [--set K=V]
    tip-ray status JOB_ID   tip-ray logs JOB_ID [--follow]   tip-ray stop JOB_ID

The cluster's token comes from --token-file, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or
~/.ray/auth_token with RAY_AUTH_MODE=token (see tip_ray/jobs/auth.py).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

ADDRESS_HELP = "Ray dashboard URL, e.g. http://127.0.0.1:8265 (default: $RAY_API_SERVER_ADDRESS)"
TOKEN_HELP = (
    "file holding the cluster's auth token (default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, "
    "or ~/.ray/auth_token when RAY_AUTH_MODE=token)"
)


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help=ADDRESS_HELP)
    p.add_argument("--token-file", default=None, metavar="FILE", help=TOKEN_HELP)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit a pipeline as a job to a Ray cluster")
    p.add_argument("pipeline", help="pipeline YAML file (inside the folder that is shipped)")
    _cluster_args(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key, e.g. train.steps=5")
    p.add_argument("--follow", action="store_true", help="stream the job's logs and exit with its outcome")
    p.add_argument("--run-dir", default=None, help="run folder on the cluster (default: logging.run_dir)")
    p.add_argument("--job-id", default=None, help="job id to use (default: tip-ray-<name>-<time>-<hex>)")
    p.add_argument("--working-dir", default=None, help="folder shipped with the job (default: the project holding the YAML)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="also leave out of the upload (gitignore syntax)")
    p.set_defaults(handler=_guarded(handle_submit))

    p = sub.add_parser("status", help="state of a job on a Ray cluster")
    p.add_argument("job_id")
    _cluster_args(p)
    p.add_argument("--wait", action="store_true", help="wait until the job ends and exit with its outcome")
    p.set_defaults(handler=_guarded(handle_status))

    p = sub.add_parser("logs", help="output of a job on a Ray cluster")
    p.add_argument("job_id")
    _cluster_args(p)
    p.add_argument("--follow", action="store_true", help="stream until the job ends and exit with its outcome")
    p.set_defaults(handler=_guarded(handle_logs))

    p = sub.add_parser("stop", help="stop a job on a Ray cluster")
    p.add_argument("job_id")
    _cluster_args(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the job to stop (default 60)")
    p.add_argument("--no-wait", action="store_true", help="only ask the job to stop")
    p.set_defaults(handler=_guarded(handle_stop))


def _guarded(handler):
    """Report a JobsError as one clear line and exit code 2, like config errors."""

    def run(args: argparse.Namespace) -> int:
        from tip_ray.jobs.errors import EXIT_ERROR, JobsError

        try:
            return handler(args)
        except JobsError as exc:
            print(f"tip-ray: error: {exc}", file=sys.stderr)
            return EXIT_ERROR

    return run


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()


def _connect(args: argparse.Namespace):
    from tip_ray.jobs.auth import cleartext_warning, find_token
    from tip_ray.jobs.client import JobsClient, resolve_address

    address = resolve_address(args.address)
    token = find_token(args.token_file)
    warning = cleartext_warning(address, token)
    if warning:
        print(f"tip-ray: {warning}", file=sys.stderr)
    return JobsClient(address, token)


def _follow(client, job_id: str) -> int:
    from tip_ray.jobs.errors import EXIT_INTERRUPTED
    from tip_ray.jobs.lifecycle import exit_code, follow

    try:
        status = follow(client, job_id, _write)
    except KeyboardInterrupt:
        print(
            f"\ntip-ray: stopped following; job {job_id} keeps running "
            f"(`tip-ray stop {job_id} --address {client.address}` stops it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(f"tip-ray: job {job_id} {status.value}", file=sys.stderr)
    return exit_code(status)


def handle_submit(args: argparse.Namespace) -> int:
    from tip_ray.jobs.submit import plan_job

    plan = plan_job(
        args.pipeline,
        args.set,
        working_dir=args.working_dir,
        run_dir=args.run_dir,
        submission_id=args.job_id,
        excludes=args.exclude,
    )
    for note in plan.notes:
        print(f"tip-ray: note: {note}", file=sys.stderr)
    client = _connect(args)
    print(f"tip-ray: uploading {plan.working_dir} to {client.address}", file=sys.stderr)
    job_id = client.submit(
        entrypoint=plan.entrypoint,
        runtime_env=plan.runtime_env,
        submission_id=plan.submission_id,
        metadata=plan.metadata,
    )
    print(job_id)  # alone on stdout, so scripts can capture it
    print(
        f"tip-ray: submitted {plan.pipeline_in_job} to {client.address} as {job_id}; "
        f"`tip-ray logs {job_id} --follow` streams its output",
        file=sys.stderr,
    )
    return _follow(client, job_id) if args.follow else 0


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def handle_status(args: argparse.Namespace) -> int:
    client = _connect(args)
    if args.wait:
        from tip_ray.jobs.lifecycle import exit_code, wait_until_final

        status = wait_until_final(client, args.job_id, timeout_s=float("inf"))
        print(f"{args.job_id}: {status.value}")
        return exit_code(status)
    info = client.info(args.job_id)
    print(f"{args.job_id}: {info.status.value}")
    if info.message:
        print(f"  message:    {info.message}")
    print(f"  entrypoint: {info.entrypoint}")
    print(f"  started:    {_when(info.start_time)}")
    print(f"  ended:      {_when(info.end_time)}")
    if info.driver_exit_code is not None:
        print(f"  exit code:  {info.driver_exit_code}")
    return 0


def handle_logs(args: argparse.Namespace) -> int:
    client = _connect(args)
    if args.follow:
        return _follow(client, args.job_id)
    _write(client.logs(args.job_id))
    return 0


def handle_stop(args: argparse.Namespace) -> int:
    from tip_ray.jobs.lifecycle import wait_until_final

    client = _connect(args)
    was_running = client.stop(args.job_id)
    if not was_running:
        print(f"{args.job_id}: not running ({client.status(args.job_id).value}); nothing to stop")
        return 0
    if args.no_wait:
        print(f"{args.job_id}: stop requested")
        return 0
    status = wait_until_final(client, args.job_id, args.timeout)
    print(f"{args.job_id}: {status.value}")
    return 0
