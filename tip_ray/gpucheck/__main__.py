"""python -m tip_ray.gpucheck: the tier-1 GPU check (see this package's docstring, docs/gpu.md).

Each section runs in its own process, so that a hang or a crash costs that section only and
the device's memory starts clean; the parent enforces each section's time budget (plus a
grace period) and writes the combined JSON and Markdown table under --out.
Exit status: 0 when every section finished and every numerical check passed (the memory and
time targets are reported, not enforced).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

SECTIONS = ("numerics", "loss_step", "learner_step", "generate")
REPO = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tip_ray.gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpucheck-out",
                        help="folder for the results (default: $OUT, else ./gpucheck-out)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto = cuda when torch sees a GPU, else cpu")
    parser.add_argument("--toy", action="store_true", help="toy sizes (the CPU run in the test suite)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--in-process", action="store_true",
                        help="run the sections one after another in this process (no isolation, no kill at the "
                             "time limit; saves a process start per section: the CPU run in the test suite)")
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="multiply every section's time budget (e.g. 0.5 for a quicker partial rerun)")
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # child: run one section
    parser.add_argument("--record", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    return parser


def _device(choice: str):
    import torch

    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("tip-ray gpucheck: error: --device cuda but torch sees no GPU (torch.cuda.is_available() is False)")
    return torch.device("cuda", 0) if choice == "cuda" else torch.device("cpu")


def _sizes(toy: bool):
    from .sizes import FULL, TOY

    return TOY if toy else FULL


def run_section(name: str, device_choice: str, toy: bool, record_path: Path, budget: float) -> dict:
    """Run one section here, recording into ``record_path`` as it goes; returns the record."""
    from .budget import Deadline, SectionRecord

    record = SectionRecord(record_path, name, budget)
    try:
        device = _device(device_choice)
        sizes = _sizes(toy)
        if device.type == "cpu" and sizes.cpu_threads:
            import torch

            torch.set_num_threads(sizes.cpu_threads)
        module = importlib.import_module(f"tip_ray.gpucheck.{name}")
        module.run(device, sizes, Deadline(budget), record)
    except Exception:  # noqa: BLE001 - the record says what failed; the other sections still run
        record.data["error"] = traceback.format_exc()[-4000:]
        record.finish("failed")
        traceback.print_exc()
        return record.data
    record.finish("out_of_time" if record.data.get("skipped_for_time") else "ok")
    return record.data


def environment(device) -> dict:
    from importlib.metadata import version

    import torch

    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "transformers": version("transformers"), "device": str(device), "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, device_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count)
    else:
        env.update(device_name=platform.processor() or platform.machine(), device_memory_gib=None)
    return env


def _run_child(name: str, args: argparse.Namespace, device, budget: float, parts: Path, log) -> dict:
    from .sizes import GRACE_S

    record = parts / f"{name}.json"
    command = [sys.executable, "-m", "tip_ray.gpucheck", "--section", name, "--record", str(record),
               "--budget", str(budget), "--device", device.type] + (["--toy"] if args.toy else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
               PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log.write(f"\n===== {name} (budget {budget:.0f} s) =====\n")
    log.flush()
    start = time.monotonic()
    killed, returncode = False, None
    try:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=budget + GRACE_S).returncode
    except subprocess.TimeoutExpired:
        killed = True
    try:
        result = json.loads(record.read_text())
    except (OSError, ValueError):
        result = {"section": name, "status": "running", "cases": [], "checks": [], "info": {}}
    if killed:
        result["status"] = "killed"
        result["error"] = f"killed at its time limit ({budget:.0f} s + {GRACE_S} s grace); finished cases are kept"
    elif result.get("status") == "running":
        result["status"] = "failed"
        result.setdefault("error", f"the section's process ended with code {returncode} before finishing (see tier1.log)")
    result["seconds"] = round(time.monotonic() - start, 2)
    result["budget_s"] = budget
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.section:
        record = run_section(args.section, args.device, args.toy, Path(args.record), args.budget)
        return 0 if record["status"] != "failed" else 1
    from . import report
    from .sizes import BUDGETS_S, TOY_BUDGETS_S

    device = _device(args.device)
    out = Path(args.out)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    budgets = {name: seconds * args.budget_scale for name, seconds in (TOY_BUDGETS_S if args.toy else BUDGETS_S).items()}
    result = {"environment": {**environment(device), "toy": args.toy}, "sections": {}}
    start = time.monotonic()
    with open(out / "tier1.log", "a") as log:
        for name in args.sections:
            if args.in_process:
                section = run_section(name, device.type, args.toy, parts / f"{name}.json", budgets[name])
            else:
                section = _run_child(name, args, device, budgets[name], parts, log)
            result["sections"][name] = section
            print(f"{name:>13}: {section['status']} in {section['seconds']} s", flush=True)
    result["seconds"] = round(time.monotonic() - start, 1)
    result["targets"] = report.targets(result)
    checks = [c for s in result["sections"].values() for c in s.get("checks", [])]
    result["passed"] = all(s["status"] == "ok" for s in result["sections"].values()) and all(c["passed"] for c in checks)
    (out / "tier1.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    table = report.markdown(result)
    (out / "tier1.md").write_text(table)
    print(table)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
