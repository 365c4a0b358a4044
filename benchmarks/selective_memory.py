"""Peak memory and time of one learner loss step: selective LM head vs all-token references.

    python benchmarks/selective_memory.py            # all cases, writes JSON + docs table
    python benchmarks/selective_memory.py --only selective --ratios 0.1   # a quick look

Shape (defaults, logits-heavy as in Qwen3): vocabulary 151936, hidden 512, 4 sequences x 1024
response tokens, float32 on CPU. The teacher signal is its exact compact form: the teacher's
final hidden states plus its LM head. Rows:

- ``selective`` at ratio rho: ``tip_ray.tip.selective_distill_loss`` (reverse KL) on floor(rho * 1024)
  positions per sequence (chosen by the ``random`` rule; which ones does not change memory or time);
  the learner receives only the selected teacher rows ("select before transfer").
- ``plain``: every position, full student logits with gradient, teacher logits, reverse KL, mean.
- ``trl``: ``trl.trainer.distillation_trainer._chunked_divergence_loss`` from trl 1.16 with beta = 1
  (reverse KL) on the same hidden states and heads; on CPU it projects every position.

Method. Each case runs in its own subprocess (freed memory is not reliably returned to the OS
inside one process). After the inputs exist the child collects garbage, reads VmRSS, resets the
kernel's peak-RSS counter (writing "5" to /proc/self/clear_refs sets VmHWM to the current RSS),
runs forward + backward of the loss, then reads VmHWM: peak_mib = VmHWM - VmRSS_before, exact and
without sampling. Where clear_refs cannot be written, a thread samples RSS every millisecond
instead (the method used is printed). ``seconds`` is wall time of forward + backward; the CPU time
of the process (all threads) is printed too, as it is less sensitive to other load on the machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "selective_memory.json"
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Selective learner step memory"
RATIOS = (1.0, 0.5, 0.2, 0.1)


# ---- child: one measured step -------------------------------------------------------------------

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1))


class PeakRss:
    """Peak RSS over a region, from the kernel's VmHWM after a reset, or by sampling."""

    def __init__(self) -> None:
        self.method = "VmHWM after clear_refs reset"
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
        except OSError:
            self.method = "RSS sampled every 1 ms"

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.baseline_kib = _status_kib("VmRSS")
        self._stop = threading.Event()
        self._sampled_kib = self.baseline_kib
        if self.method.startswith("VmHWM"):
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled_kib = max(self._sampled_kib, _status_kib("VmRSS"))
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        if self.method.startswith("VmHWM"):
            self.peak_kib = _status_kib("VmHWM")
        else:
            self._stop.set()
            self._thread.join()
            self.peak_kib = self._sampled_kib

    @property
    def added_mib(self) -> float:
        return (self.peak_kib - self.baseline_kib) / 1024


def _volunteer_for_oom_killer() -> None:
    """On a shared machine, if memory runs out, the benchmark case should be the process to go."""
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")
    except OSError:
        pass


def _run_case(path: str, ratio: float, args: argparse.Namespace) -> dict:
    import torch

    torch.manual_seed(0)
    batch, time_steps, width, vocab = args.batch, args.tokens, args.hidden, args.vocab
    hidden = torch.randn(batch, time_steps, width, requires_grad=True)
    head = torch.nn.Parameter(torch.randn(vocab, width) * 0.02)
    teacher_hidden = torch.randn(batch, time_steps, width)
    teacher_head = torch.randn(vocab, width) * 0.03

    if path == "selective":
        from tip_ray.tip import TeacherHidden, select_tokens, selected_weights, selection_positions, selective_distill_loss

        response_mask = torch.ones(batch, time_steps, dtype=torch.bool)
        zeros = torch.zeros(batch, time_steps)
        selection = select_tokens(
            "random", entropy=zeros, reverse_kl=zeros, forward_kl=zeros, response_mask=response_mask,
            ratio=ratio, generator=torch.Generator().manual_seed(0),
        )
        positions = selection_positions(selection)
        weights = selected_weights(selection)
        signal = TeacherHidden(teacher_hidden[positions[:, 0], positions[:, 1]].contiguous())
        count = float(selection.num_selected)

        def step():
            loss = selective_distill_loss(
                hidden, head, positions, signal, weights, loss="reverse_kl",
                global_token_count=count, teacher_head=teacher_head, chunk_size=args.chunk_size,
            )
            loss.backward()
            return loss

    elif path == "plain":
        count = float(batch * time_steps)

        def step():
            logits = hidden.reshape(-1, width) @ head.T
            with torch.no_grad():
                teacher_logprobs = torch.log_softmax(teacher_hidden.reshape(-1, width) @ teacher_head.T, dim=-1)
            logprobs = torch.log_softmax(logits, dim=-1)
            loss = (logprobs.exp() * (logprobs - teacher_logprobs)).sum(dim=-1).mean()
            loss.backward()
            return loss

    elif path == "trl":
        from trl.trainer.distillation_trainer import _chunked_divergence_loss

        completion_mask = torch.ones(batch, time_steps, dtype=torch.long)
        count = float(batch * time_steps)

        def step():
            loss, _, _ = _chunked_divergence_loss(
                hidden, teacher_hidden, head, teacher_head, completion_mask, beta=1.0
            )
            loss.backward()
            return loss

    else:
        raise ValueError(f"unknown path {path!r}; valid: selective, plain, trl")

    with PeakRss() as peak:
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    assert torch.isfinite(loss).item() and torch.isfinite(head.grad).all().item()
    return {
        "path": path,
        "ratio": ratio,
        "peak_mib": round(peak.added_mib, 1),
        "seconds": round(seconds, 2),
        "_cpu_seconds": round(cpu_seconds, 2),
        "_tokens": int(count),
        "_loss": float(loss),
        "_method": peak.method,
        "_baseline_mib": round(peak.baseline_kib / 1024, 1),
        "_threads": torch.get_num_threads(),
    }


# ---- parent: every case in its own process -----------------------------------------------------

def _cases(args: argparse.Namespace) -> list[tuple[str, float]]:
    cases = [("plain", 1.0), ("trl", 1.0)] + [("selective", r) for r in args.ratios]
    return [case for case in cases if args.only is None or case[0] in args.only]


def _child(path: str, ratio: float, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--child", path, "--ratio", str(ratio), "--vocab", str(args.vocab),
        "--hidden", str(args.hidden), "--batch", str(args.batch), "--tokens", str(args.tokens),
        "--chunk-size", str(args.chunk_size),
    ]
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        killed = " (killed by a signal: out of memory?)" if done.returncode < 0 else ""
        raise RuntimeError(f"case {path} ratio {ratio} failed with code {done.returncode}{killed}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _combine(found: list[dict]) -> dict:
    """One row from repeated runs of a case: the highest peak, the shortest times."""
    row = dict(found[0])
    row["peak_mib"] = max(r["peak_mib"] for r in found)
    row["seconds"] = min(r["seconds"] for r in found)
    row["_cpu_seconds"] = min(r["_cpu_seconds"] for r in found)
    row["_runs"] = len(found)
    return row


def _targets(rows: list[dict]) -> list[tuple[str, bool | None, str]]:
    by = {(row["path"], row["ratio"]): row for row in rows}
    trl, plain = by.get(("trl", 1.0)), by.get(("plain", 1.0))
    checks = []

    def check(name, row, limit, key, text):
        if row is None or limit is None:
            checks.append((name, None, "not measured"))
        else:
            checks.append((name, row[key] <= limit, text.format(value=row[key], limit=limit)))

    check("selective 0.5 peak <= trl / 2", by.get(("selective", 0.5)), trl and trl["peak_mib"] / 2, "peak_mib",
          "{value:.0f} MiB vs limit {limit:.0f} MiB")
    check("selective 0.1 peak <= trl / 5", by.get(("selective", 0.1)), trl and trl["peak_mib"] / 5, "peak_mib",
          "{value:.0f} MiB vs limit {limit:.0f} MiB")
    check("selective 1.0 peak <= trl", by.get(("selective", 1.0)), trl and trl["peak_mib"], "peak_mib",
          "{value:.0f} MiB vs limit {limit:.0f} MiB")
    cpu_note = ""
    if plain and by.get(("selective", 1.0)):
        cpu_note = f"; CPU time {by[('selective', 1.0)]['_cpu_seconds']:.1f} s vs plain {plain['_cpu_seconds']:.1f} s"
    check("selective 1.0 time <= 1.15 x plain", by.get(("selective", 1.0)), plain and plain["seconds"] * 1.15,
          "seconds", "wall {value:.1f} s vs limit {limit:.1f} s" + cpu_note)
    return checks


def _markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        SECTION,
        "",
        f"One learner loss step (forward + backward), reverse KL, vocabulary {args.vocab}, hidden {args.hidden}, "
        f"{args.batch} x {args.tokens} response tokens, float32 on CPU ({rows[0]['_threads']} torch threads), "
        "teacher signal as final hidden states plus the teacher's LM head. Produced by "
        "`python benchmarks/selective_memory.py`; figures in `benchmarks/results/selective_memory.json`.",
        "",
        "Peak = peak RSS during the step minus RSS once the inputs exist, each case in its own process "
        f"(method: {rows[0]['_method']}); {rows[0]['_runs']} run(s) per case, interleaved, keeping the highest "
        "peak and the shortest times. `plain` = all positions with full logits; `trl` = trl 1.16 "
        "`_chunked_divergence_loss` with beta = 1 (its CPU path projects every position); `selective` = "
        f"`tip_ray.tip.selective_distill_loss`, chunk {args.chunk_size}, on floor(rho x {args.tokens}) "
        "positions per sequence; its peak is set by one chunk (student and teacher scores "
        f"[min({args.chunk_size}, N), V] in float32) plus the [V, d] float32 head gradient computed in forward, so it "
        f"falls with rho only once fewer than {args.chunk_size} tokens are selected.",
        "",
        "Not part of the measured step: the statistics pass that picks the tokens (`token_stats_from_hidden` "
        "in the selector stage, no gradient, the same chunk-bound buffers) and the model trunk.",
        "",
        f"Wall times depend on other load: the 1-minute load average was {args.load[0]:.1f} at the start and "
        f"{args.load[1]:.1f} at the end of the run on {os.cpu_count()} cores; CPU time (all threads of the "
        "process) is less sensitive to it.",
        "",
        "| path | ratio | tokens | peak (MiB) | time (s) | CPU time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['path']} | {row['ratio']:.1f} | {row['_tokens']} | {row['peak_mib']:.0f} | {row['seconds']:.1f} "
            f"| {row['_cpu_seconds']:.1f} |"
        )
    lines += ["", "Targets:", ""]
    for name, met, text in _targets(rows):
        verdict = "not measured" if met is None else ("met" if met else "NOT met")
        lines.append(f"- {name}: {verdict} ({text})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--only", nargs="+", choices=("selective", "plain", "trl"), default=None)
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds over all cases; a row keeps the highest peak and the shortest times")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the JSON and docs")
    parser.add_argument("--child", choices=("selective", "plain", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--ratio", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        _volunteer_for_oom_killer()
        print(json.dumps(_run_case(args.child, args.ratio, args)))
        return

    load_start = os.getloadavg()[0]
    runs: dict[tuple[str, float], list[dict]] = {}
    for repeat in range(args.repeats):  # rounds interleave the cases, so slow spells hit all of them
        for path, ratio in _cases(args):
            row = _child(path, ratio, args)
            runs.setdefault((path, ratio), []).append(row)
            print(f"{path:>9} ratio {ratio:.1f} run {repeat + 1}: tokens {row['_tokens']:5d}  peak {row['peak_mib']:8.0f} MiB  "
                  f"time {row['seconds']:7.1f} s  cpu {row['_cpu_seconds']:7.1f} s  ({row['_method']})", flush=True)
    rows = [_combine(found) for found in runs.values()]
    args.load = (load_start, os.getloadavg()[0])
    print(f"1-minute load average: {args.load[0]:.1f} at start, {args.load[1]:.1f} at end ({os.cpu_count()} cores)")
    for name, met, text in _targets(rows):
        print(f"target {name}: {'not measured' if met is None else ('met' if met else 'NOT met')} ({text})")
    if args.no_write:
        return
    from doc_sections import write_figures

    write_figures(RESULTS, [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows], DOCS, SECTION,
                  _markdown(rows, args))
    print(f"wrote {RESULTS} and {DOCS}")


if __name__ == "__main__":
    main()
