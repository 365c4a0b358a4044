"""Print the tier-2 GPU check's short table from the files scripts/gpu_tier2.sh left in its folder;
exit 1 when any part failed."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def part_status(out: Path, name: str) -> tuple[int | None, int | None]:
    try:
        rc, seconds = (out / f"{name}.rc").read_text().split()
        return int(rc), int(seconds)
    except (OSError, ValueError):
        return None, None


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def tests_row(out: Path) -> tuple[str, bool]:
    try:
        suite = ET.parse(out / "gpu_tests.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        text = f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped"
        return text, failed == 0 and total - skipped > 0
    except (OSError, ET.ParseError, AttributeError):
        return "no report (see gpu_tests.log)", False


def throughput_rows(out: Path) -> tuple[list[tuple[str, str]], bool]:
    result = read_json(out / "throughput.json")
    if not result:
        return [("rollout throughput", "no result (see throughput.log)")], False
    rows = []
    by = {(r["model"], r["backend"]): r for r in result["results"]}
    for model in ("tiny", "medium"):
        hf, vl = by.get((model, "hf generate")), by.get((model, "vllm"))
        if hf and vl:
            rows.append((f"tokens/s {model} ({vl['params'] / 1e6:.1f}M) hf / vllm",
                         f"{hf['tokens_per_s']:.0f} / {vl['tokens_per_s']:.0f} (x{vl['tokens_per_s'] / hf['tokens_per_s']:.1f})"))
    for key, seconds in result.get("weight_sync_seconds", {}).items():
        if "vllm" in key:
            rows.append((key, f"{seconds:.3f} s"))
    return rows, bool(rows)


def main(out: Path) -> int:
    ok = True
    rows: list[tuple[str, str]] = []
    for name in ("gpus", "versions"):
        text = (out / f"{name}.txt").read_text().strip() if (out / f"{name}.txt").exists() else "?"
        rows.append((name, text.replace("\n", "; ")))
    text, passed = tests_row(out)
    rc, seconds = part_status(out, "gpu_tests")
    rows.append(("gpu tests", f"{text} ({seconds}s)"))
    ok &= passed and rc == 0
    tp_rows, passed = throughput_rows(out)
    rc, seconds = part_status(out, "throughput")
    rows += tp_rows
    ok &= passed and rc == 0
    for name in ("pipeline", "pipeline_broadcast"):
        pipe = read_json(out / f"{name}.json")
        if pipe and pipe.get("ok"):
            rows.append((name, f"{pipe['steps']} steps in {pipe['seconds']}s, final loss "
                         f"{pipe['final_loss']:.4f}; teacher on {pipe['teacher_device']}, "
                         f"student on {pipe['student_device']}; weights by {pipe.get('weight_sync', '?')}"))
        else:
            rows.append((name, f"FAILED ({(pipe or {}).get('error', f'see {name}.log')})"))
            ok = False
    width = max(len(k) for k, _ in rows)
    print(f"{'check'.ljust(width)} | result")
    print(f"{'-' * width}-+-{'-' * 40}")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")
    print(f"{'overall'.ljust(width)} | {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
