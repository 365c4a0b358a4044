"""Sampling on a busy machine: how OpenMP's idle-thread policy changes Hugging Face generate of the
example's student when other processes want the same cores.

    python benchmarks/thread_contention.py [--student FOLDER] [--busy 0,4] [--threads 2]
                                           [--demo-pairs 3] [--no-write]

torch's Linux wheels run their threads on GNU libgomp, whose idle threads spin for a while before
they sleep. Stage actors start with GOMP_SPINCOUNT=1000 (tip_ray/pipeline/placement.py); this
measures why. Each case runs in a fresh process (libgomp reads its settings once, at load) with
`--threads` torch threads: one warm-up call, then one timed call of HF generate on 8 sequences (the
example's batch: MATH-500-like prompts, 2 samples each) of exactly 96 new tokens, sampling at
temperature 1. Beside it, `--busy` other processes spin a Python loop each (0 = a quiet machine).
Settings: libgomp's default, GOMP_SPINCOUNT=1000 (the stage actors'), OMP_WAIT_POLICY=PASSIVE.

Tiny models run very short parallel regions, where waking a sleeping thread costs more than it
does for the example's student, so `--demo-pairs` also times the whole demo (`tip-ray demo`, its
tiny models) both ways on a quiet machine, the two settings interleaved: libgomp's default
(GOMP_SPINCOUNT=300000, set explicitly because the stage actors would otherwise get 1,000) and
the stage actors' own. It reports the demo's distillation time and each stage's median tokens/s
over steps 2 onward (metrics.jsonl).

The student is the example's pruned SmolLM2 from the cache (`prepare_run`, as
benchmarks/rollout_real_pair.py finds it) or any Hugging Face folder given with `--student`.
Writes benchmarks/results/thread_contention.json and its section of docs/benchmarks.md unless
`--no-write`. The 1-minute load average is printed with every case.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from doc_sections import write_figures  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "thread_contention.json"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Sampling on a busy machine: OpenMP's idle threads"
SETTINGS = {  # name -> environment for the measuring process
    "libgomp default": {},
    "GOMP_SPINCOUNT=1000 (stage actors)": {"GOMP_SPINCOUNT": "1000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}
PROMPTS = ("What is 12 times 7? Explain step by step.", "Solve x^2 = 16 for x.",
           "How many primes are below 30?", "Simplify (3x + 2) - (x - 5).")
NEW_TOKENS = 96
DEMO_SETTINGS = {  # name -> environment of the `tip-ray demo` process (its stage actors inherit it)
    "libgomp default": {"GOMP_SPINCOUNT": "300000"},
    "GOMP_SPINCOUNT=1000 (stage actors)": {},
}
STAGE_RATES = ("rollout", "teacher", "selector", "learner")  # <stage>_tokens_per_s in metrics.jsonl

MEASURE = """
import json, sys, time, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, threads, new_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prompts = json.loads(sys.argv[4])
torch.set_num_threads(threads)
tokenizer = AutoTokenizer.from_pretrained(folder)
tokenizer.padding_side = "left"
if tokenizer.pad_token is None:
    tokenizer.pad_token = tokenizer.eos_token
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
         if tokenizer.chat_template else p for p in prompts for _ in range(2)]
batch = tokenizer(texts, return_tensors="pt", padding=True)
def generate(tokens):
    torch.manual_seed(0)
    with torch.no_grad():
        model.generate(**batch, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, temperature=1.0,
                       top_p=1.0, pad_token_id=tokenizer.pad_token_id)
generate(8)
start = time.perf_counter()
generate(new_tokens)
print(json.dumps({"tokens_per_s": len(texts) * new_tokens / (time.perf_counter() - start)}))
"""


def setting_env(extra_env: dict[str, str]) -> dict[str, str]:
    """This process's environment without its own OpenMP settings, plus the case's `extra_env`."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    return env | extra_env


def measure(folder: str, threads: int, extra_env: dict[str, str]) -> float:
    env = setting_env(extra_env) | {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", MEASURE, folder, str(threads), str(NEW_TOKENS), json.dumps(PROMPTS)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"]


def run(folder: str, busy_counts: list[int], threads: int) -> dict:
    rows = []
    for busy in busy_counts:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            for name, env in SETTINGS.items():
                rate = measure(folder, threads, env)
                load = os.getloadavg()[0]
                rows.append({"busy": busy, "setting": name, "tokens_per_s": rate, "load": load})
                print(f"{busy} busy processes, {name}: {rate:.1f} tokens/s (1-minute load average {load:.2f})",
                      flush=True)
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
    return {"student": folder, "threads": threads, "busy": busy_counts, "rows": rows,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}


def demo_run(run_dir: Path, extra_env: dict[str, str]) -> dict:
    """One `tip-ray demo` into a fresh `run_dir`: its distillation seconds (as it prints them) and
    each stage's median tokens/s from step 2 on (step 1 includes the stages' warm-up)."""
    out = subprocess.run([sys.executable, "-m", "tip_ray.cli", "demo", "--run-dir", str(run_dir)], env=setting_env(extra_env),
                         capture_output=True, text=True, check=True, cwd=REPO)
    found = re.search(r"distillation (\d+) s", out.stdout)
    if found is None:
        raise RuntimeError(f"tip-ray demo printed no distillation time; its output ends:\n{out.stdout[-2000:]}")
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [s for s in steps if s["step"] > 1]
    rates = {stage: statistics.median(s[f"{stage}_tokens_per_s"] for s in steps) for stage in STAGE_RATES}
    return {"distill_seconds": int(found.group(1)), "stage_tokens_per_s": rates}


def run_demo_pairs(pairs: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="thread-contention-demo-") as work:
        for pair in range(pairs):
            for index, (name, env) in enumerate(DEMO_SETTINGS.items()):
                figures = demo_run(Path(work) / f"{pair}-{index}", env)
                rows.append({"pair": pair, "setting": name, **figures, "load": os.getloadavg()[0]})
                print(f"demo pair {pair + 1}/{pairs}, {name}: distillation {figures['distill_seconds']} s, "
                      + ", ".join(f"{k} {v:.0f}" for k, v in figures["stage_tokens_per_s"].items())
                      + " tokens/s", flush=True)
    return rows


def demo_lines(rows: list[dict]) -> list[str]:
    """Medians over the pairs, per setting, and the spin setting's ratio to libgomp's default."""
    def median_of(name: str, pick) -> float:
        return statistics.median(pick(r) for r in rows if r["setting"] == name)

    default, spin = DEMO_SETTINGS
    pairs = len({r["pair"] for r in rows})
    lines = [
        "", f"The demo end to end on a quiet machine, its tiny models: {pairs} runs of `tip-ray demo` per setting, "
        "the settings interleaved; medians over the runs (stage rates: each run's median over steps 2 onward).", "",
        "| figure | libgomp default | GOMP_SPINCOUNT=1000 (stage actors) | ratio |",
        "|---|---|---|---|",
    ]
    picks = [("distillation, s", lambda r: r["distill_seconds"])]
    picks += [(f"{stage} tokens/s", lambda r, stage=stage: r["stage_tokens_per_s"][stage]) for stage in STAGE_RATES]
    for label, pick in picks:
        a, b = median_of(default, pick), median_of(spin, pick)
        lines.append(f"| {label} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
    return lines


def report_lines(result: dict) -> list[str]:
    by = {(r["busy"], r["setting"]): r for r in result["rows"]}
    default = "libgomp default"
    lines = [
        SECTION, "",
        f"`python benchmarks/thread_contention.py --busy {','.join(map(str, result['busy']))} --threads "
        f"{result['threads']}` on {result['machine']}, {result['date']}. HF generate of the example's student "
        f"(float32, {result['threads']} torch threads) on 8 sequences x {NEW_TOKENS} new tokens, one timed call "
        "after a warm-up, each case in a fresh process, beside that many processes each spinning a Python loop.",
        "",
        "| busy processes | setting | tokens/s | vs libgomp default | 1-minute load |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        base = by[(row["busy"], default)]["tokens_per_s"]
        lines.append(f"| {row['busy']} | {row['setting']} | {row['tokens_per_s']:.1f} | "
                     f"{row['tokens_per_s'] / base:.2f}x | {row['load']:.2f} |")
    if result.get("demo"):
        lines += demo_lines(result["demo"])
    lines += ["", "Stage actors start with GOMP_SPINCOUNT=1000 unless the environment already sets GOMP_SPINCOUNT "
              "or OMP_WAIT_POLICY (tip_ray/pipeline/placement.py). Single calls: a few percent either way is noise."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default=None)
    parser.add_argument("--busy", default="0,4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--demo-pairs", type=int, default=3, help="tip-ray demo runs per setting (0: none)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from rollout_real_pair import PIPELINE, student_folder

    from tip_ray.config import load_pipeline

    folder = student_folder(args.student, load_pipeline(PIPELINE))
    result = run(folder, [int(b) for b in args.busy.split(",")], args.threads)
    result["demo"] = run_demo_pairs(args.demo_pairs)
    lines = report_lines(result)
    print("\n".join(lines))
    if not args.no_write:
        write_figures(RESULTS, result, DOC, SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
