"""`tip-ray report RUN_DIR`: the run (or sweep) as one HTML page to open in a browser."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a run or sweep folder")
    p.add_argument("folder", metavar="RUN_DIR", help="a run folder (runs/<name>/) or a sweep's report folder")
    p.add_argument("-o", "--output", default=None, help="HTML file to write (default: RUN_DIR/report.html)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tip_ray.report.build import write_report

    out = write_report(args.folder, args.output)
    print(f"report: {out}")
    return 0
