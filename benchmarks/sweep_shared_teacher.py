"""A sweep's wall time with one shared teacher service against every run building its own
teacher: the same small sweep over the cached demo models (3 rules, 1 seed, 2 updates each, no
eval), each way in a fresh `tip-ray sweep` process, interleaved.

    python benchmarks/sweep_shared_teacher.py [--runs 3] [--steps 2] [--repeats 1]

Prints each wall time with the load average before and after; on a shared machine the figures
are noisy. Needs the demo models (`tip-ray demo` builds them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULES = [{"type": "all"}, {"type": "soft_or", "ratio": 0.5}, {"type": "q3_only", "ratio": 0.2},
         {"type": "random", "ratio": 0.5}, {"type": "entropy_sample", "ratio": 0.2}]


def write_sweep(folder: Path, runs: int, steps: int) -> Path:
    sweep = {"sweep": {
        "base": str(REPO / "pipelines" / "demo.yaml"),
        "seeds": [0],
        "set": {"train.steps": steps, "checkpoint.every_steps": 0, "eval.at_start": False,
                "eval.every_steps": 0, "learner.num_ranks": 1},
        "runs": [{"label": f"r{i}", "rule": rule} for i, rule in enumerate(RULES[:runs])],
        "report_dir": str(folder / "report"),
        "runs_dir": str(folder / "runs"),
    }}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def one_sweep(shared: bool, runs: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sweep(Path(tmp), runs, steps)
        args = [sys.executable, "-m", "tip_ray.cli", "sweep", str(path), "--no-token-map"]
        if not shared:
            args.append("--no-shared-teacher")
        begin = time.perf_counter()
        done = subprocess.run(args, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - begin
        if done.returncode:
            raise SystemExit(f"sweep failed ({'shared' if shared else 'own'} teacher):\n{done.stderr[-3000:]}")
        lines = [l for l in done.stdout.splitlines() if "shared teacher service" in l or "] r" in l]
        print("\n".join(f"    {l}" for l in lines))
        return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, choices=range(1, len(RULES) + 1))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.repeats):
        for shared in (False, True):
            before = os.getloadavg()[0]
            wall = one_sweep(shared, args.runs, args.steps)
            print(f"{'shared teacher service' if shared else 'own teacher per run  '}: {args.runs} runs x "
                  f"{args.steps} updates, wall {wall:.1f} s (load average {before:.2f} before, "
                  f"{os.getloadavg()[0]:.2f} after)", flush=True)


if __name__ == "__main__":
    main()
