"""`tip-ray`: the command line. Each subcommand lives in tip_ray/commands/<name>.py and defines
`register(subparsers)`; modules import heavy libraries (torch, ray) only when they run."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("run", "validate", "demo", "eval", "sweep", "jobs", "report", "models", "example", "teacher")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tip-ray",
        description="On-policy distillation with token-importance selection, on Ray.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (for a bug report) instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tip_ray.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tip_ray.commands.{name}":
                continue  # a command whose module is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from tip_ray.errors import TipRayError

    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("tip-ray: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line (secrets masked), never a traceback unless asked for
        if args.debug:
            raise
        from tip_ray.checkpoint.redact import redact

        if isinstance(exc, TipRayError):
            print(f"tip-ray: error: {redact(str(exc))}", file=sys.stderr)
            return 2
        print(f"tip-ray: error: unexpected {type(exc).__name__}: {redact(str(exc))} "
              f"(rerun with `tip-ray --debug ...` for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
