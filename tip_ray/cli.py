"""`tip-ray`: the command line. Each subcommand lives in tip_ray/commands/<name>.py and defines
`register(subparsers)`; modules import heavy libraries (torch, ray) only when they run."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("run", "validate", "demo", "eval", "sweep", "jobs", "models", "example")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tip-ray",
        description="On-policy distillation with token-importance selection, on Ray.",
    )
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
    except TipRayError as exc:
        print(f"tip-ray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tip-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
