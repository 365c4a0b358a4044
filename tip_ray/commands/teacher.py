"""`tip-ray teacher serve|status|stop`: a teacher service that several runs share, on a running
Ray cluster (tip_ray/teacher/service.py). A run uses it with
`teacher.backend: {type: service, name: NAME}`."""

from __future__ import annotations

import argparse
import json

SERVICE_ADDRESS_HELP = "address of the running Ray cluster (default auto: the one on this machine)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="a teacher service shared by several runs: serve, status, stop")
    actions = p.add_subparsers(dest="action", required=True, help="what to do")
    serve = actions.add_parser("serve", help="start a named teacher service on a running Ray cluster")
    serve.add_argument("pipeline", help="pipeline YAML whose teacher (models.teacher, teacher.signal, teacher.backend, "
                                        "models.dtype, the teacher pool) and student vocabulary the service serves")
    serve.add_argument("--name", required=True, help="the service's name (teacher.backend.name of the runs)")
    serve.add_argument("--replicas", type=int, default=None, help="scorer replicas (default: teacher.num_scorers)")
    serve.add_argument("--max-restarts", type=int, default=-1,
                       help="restarts of each replica by Ray (default -1: always; 0: a dead replica stays dead)")
    serve.add_argument("--address", default="auto", help=SERVICE_ADDRESS_HELP)
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a pipeline key")
    status = actions.add_parser("status", help="list the services, or show one (replicas, constructions, requests served)")
    status.add_argument("name", nargs="?", default=None, help="the service to show (default: list every service)")
    status.add_argument("--address", default="auto", help=SERVICE_ADDRESS_HELP)
    stop = actions.add_parser("stop", help="stop a teacher service (its front and every replica)")
    stop.add_argument("name", help="the service to stop")
    stop.add_argument("--address", default="auto", help=SERVICE_ADDRESS_HELP)
    p.set_defaults(handler=handle)


def _connect(address: str) -> None:
    from tip_ray.commands.run import check_address_flag
    from tip_ray.config.loader import ConfigError
    from tip_ray.pipeline.connect import ray_init

    check_address_flag(address)
    if address == "local":
        # An embedded Ray ends with this command, and the service with it.
        raise ConfigError("--address local: a teacher service lives on a running Ray cluster; start one "
                          "(`ray start --head`) and give its address, or leave --address at auto")
    ray_init(address, log_to_driver=False)


def handle(args: argparse.Namespace) -> int:
    import ray

    from tip_ray.config.loader import ConfigError
    from tip_ray.pipeline import service_control as control

    if args.action == "serve":
        from tip_ray.commands.run import load_with_overrides
        from tip_ray.config.teacher_service import check_service_name
        from tip_ray.pipeline.prepare import prepare_run

        try:
            check_service_name(args.name)
        except ValueError as exc:
            raise ConfigError(f"--name: {exc}") from None
        if args.replicas is not None and args.replicas < 1:
            raise ConfigError(f"--replicas must be at least 1, got {args.replicas}")
        config = load_with_overrides(args.pipeline, args.set)
        prepared = prepare_run(config, write=False)
        _connect(args.address)
        try:
            replicas = args.replicas or config.teacher.num_scorers
            control.start_service(prepared, args.name, replicas=replicas, max_restarts=args.max_restarts)
            print(f"teacher service {args.name!r} is serving with {replicas} replica(s); use it with "
                  f"`teacher.backend: {{type: service, name: {args.name}}}`; stop it with "
                  f"`tip-ray teacher stop {args.name}`")
        finally:
            ray.shutdown()  # the service's actors are detached: they stay
        return 0
    _connect(args.address)
    try:
        if args.action == "status":
            if args.name is None:
                names = control.list_services()
                print("\n".join(names) if names else "no teacher service runs on this cluster")
            else:
                print(json.dumps(control.service_status(args.name), indent=2, sort_keys=True))
        else:
            count = control.stop_service(args.name)
            print(f"teacher service {args.name!r} stopped ({count} actor(s))")
    finally:
        ray.shutdown()
    return 0
